//! The XML reading every report format shares: a stream of elements and text from quick-xml's pull reader (no
//! tree of the file), with DTDs and entities refused, and errors named by line and column.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::source::Tracked;
use super::ReportError;

/// Most attributes read on one element: real reports write a dozen; quick-xml checks each new one against those
/// before it, so the count is bounded to keep that check cheap.
const MAX_ATTRIBUTES: usize = 256;

/// Deepest element nesting read: real reports nest suites a dozen levels at most, and the driver keeps one name
/// per level.
const MAX_DEPTH: usize = 256;

/// One element's start as a format reads it: its local name (namespaces dropped: TRX uses a default namespace)
/// and its attributes, unescaped. The attributes borrow the reader's buffer where they can: a 100,000-case file
/// has half a million of them, and none outlives its element.
pub(super) struct Element<'e> {
    pub(super) name: String,
    attributes: Vec<(Cow<'e, str>, Cow<'e, str>)>,
    /// The line it starts on, for messages naming it.
    pub(super) line: u64,
}

impl Element<'_> {
    /// An attribute's value, if present and not blank.
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The element with attributes of its own (the root, kept past the buffer it was read from).
    fn into_owned(self) -> Element<'static> {
        Element {
            name: self.name,
            attributes: self
                .attributes
                .into_iter()
                .map(|(key, value)| (Cow::Owned(key.into_owned()), Cow::Owned(value.into_owned())))
                .collect(),
            line: self.line,
        }
    }
}

/// What a report format does with the elements and text it is given.
pub(super) trait Handler {
    /// An element starts (an empty element is a start and an end).
    fn start(&mut self, element: &Element<'_>) -> Result<(), ReportError>;
    /// The element named `name` ends.
    fn end(&mut self, name: &str) -> Result<(), ReportError>;
    /// Text (character data, CDATA, resolved references) inside the innermost open element.
    fn text(&mut self, text: &str);
    /// The file is read to its end (formats that join parts of the file at the end do it here).
    fn finish(&mut self) {}
}

/// The pull reader over a report, read up to its root element.
pub(super) struct Events<'a> {
    reader: Reader<Tracked<'a>>,
    buffer: Vec<u8>,
    stack: Vec<String>,
}

impl<'a> Events<'a> {
    pub(super) fn new(source: Tracked<'a>) -> Self {
        let mut reader = Reader::from_reader(source);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Self {
            reader,
            buffer: Vec::with_capacity(8 * 1024),
            stack: Vec::new(),
        }
    }

    /// The decoded source, once reading is done (for its hash and size).
    pub(super) fn into_source(self) -> Tracked<'a> {
        self.reader.into_inner()
    }

    /// Whether the root element is open (false when it was an empty element).
    pub(super) fn root_open(&self) -> bool {
        !self.stack.is_empty()
    }

    /// Reads up to the root element and returns it (the format is decided from its name).
    pub(super) fn root(&mut self) -> Result<Element<'static>, ReportError> {
        loop {
            self.buffer.clear();
            let event = self.reader.read_event_into(&mut self.buffer);
            let event = match event {
                Ok(event) => event,
                Err(error) => return Err(self.malformed(&error.to_string())),
            };
            match event {
                Event::Start(start) => {
                    let start = start.into_owned();
                    let element = self.element(&start)?.into_owned();
                    self.stack.push(element.name.clone());
                    return Ok(element);
                }
                Event::Empty(start) => {
                    let start = start.into_owned();
                    return Ok(self.element(&start)?.into_owned());
                }
                Event::Eof => {
                    return Err(ReportError::Invalid("the file holds no XML element".into()))
                }
                Event::DocType(_) => return Err(self.doctype()),
                _ => {}
            }
        }
    }

    /// Feeds every event after the root's start to `handler`, until the root ends and the file with it.
    pub(super) fn run(&mut self, handler: &mut dyn Handler) -> Result<(), ReportError> {
        // The buffer is taken out of `self` while an event borrows it, so that errors can read the position.
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = loop {
            buffer.clear();
            match self.step(&mut buffer, handler) {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        self.buffer = buffer;
        result
    }

    /// Reads and hands on one event; `Ok(false)` at the end of the file.
    fn step(
        &mut self,
        buffer: &mut Vec<u8>,
        handler: &mut dyn Handler,
    ) -> Result<bool, ReportError> {
        let event = match self.reader.read_event_into(buffer) {
            Ok(event) => event,
            Err(error) => return Err(self.malformed(&error.to_string())),
        };
        match event {
            Event::Start(start) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(
                        self.malformed(&format!("elements are nested more than {MAX_DEPTH} deep"))
                    );
                }
                let element = self.element(&start)?;
                handler.start(&element)?;
                self.stack.push(element.name);
            }
            Event::Empty(start) => {
                let element = self.element(&start)?;
                handler.start(&element)?;
                handler.end(&element.name)?;
            }
            Event::End(_) => {
                if let Some(name) = self.stack.pop() {
                    handler.end(&name)?;
                }
            }
            Event::Text(text) => {
                let text = text
                    .decode()
                    .map_err(|error| self.malformed(&error.to_string()))?;
                if !self.stack.is_empty() {
                    handler.text(&text);
                } else if !text.trim().is_empty() {
                    return Err(self.malformed("text after the root element"));
                }
            }
            Event::CData(data) => {
                let text = data
                    .decode()
                    .map_err(|error| self.malformed(&error.to_string()))?;
                handler.text(&text);
            }
            Event::GeneralRef(reference) => {
                let character = match reference.resolve_char_ref() {
                    Ok(Some(character)) => character,
                    Ok(None) => {
                        let name = reference
                            .decode()
                            .map_err(|error| self.malformed(&error.to_string()))?;
                        predefined(&name).ok_or_else(|| {
                            self.malformed(&format!(
                                "the entity &{name}; is not defined (no DTD is read; only &lt; &gt; &amp; \
                                 &apos; &quot; and character references are)"
                            ))
                        })?
                    }
                    Err(error) => return Err(self.malformed(&error.to_string())),
                };
                handler.text(character.encode_utf8(&mut [0; 4]));
            }
            Event::Eof => {
                if let Some(open) = self.stack.last() {
                    return Err(
                        self.malformed(&format!("the file ends inside <{open}> (is it cut off?)"))
                    );
                }
                return Ok(false);
            }
            Event::DocType(_) => return Err(self.doctype()),
            _ => {}
        }
        Ok(true)
    }

    /// Declarations, comments and processing instructions pass; a DOCTYPE is refused: a report needs no DTD, and
    /// refusing it keeps entity bombs and external references out whatever a later reader would do with them.
    fn doctype(&self) -> ReportError {
        let (line, _) = self.position();
        ReportError::Refused(format!(
            "line {line}: a <!DOCTYPE> is not accepted (DTDs, entity declarations and external references are \
             refused)"
        ))
    }

    fn element<'e>(&self, start: &'e BytesStart<'_>) -> Result<Element<'e>, ReportError> {
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        let mut attributes = Vec::new();
        for (count, attribute) in start.attributes().enumerate() {
            if count == MAX_ATTRIBUTES {
                return Err(self.malformed(&format!(
                    "<{name}> has more than {MAX_ATTRIBUTES} attributes"
                )));
            }
            let attribute = attribute.map_err(|error| self.malformed(&error.to_string()))?;
            let key = String::from_utf8_lossy(attribute.key.local_name().into_inner());
            let value = attribute.unescape_value().map_err(|error| {
                self.malformed(&format!("in attribute {key} of <{name}>: {error}"))
            })?;
            attributes.push((key, value));
        }
        Ok(Element {
            name,
            attributes,
            line: self.position().0,
        })
    }

    fn position(&self) -> (u64, u64) {
        let source = self.reader.get_ref();
        source.line_column(self.reader.error_position().max(source.line_start))
    }

    /// A malformed-file error at the reader's position, or the limit or gzip error the reader really hit.
    fn malformed(&self, message: &str) -> ReportError {
        let source = self.reader.get_ref();
        if source.exceeded {
            return ReportError::TooLarge;
        }
        if let Some(failure) = &source.failed {
            return ReportError::BadGzip(failure.clone());
        }
        let (line, column) = self.position();
        ReportError::Malformed(format!("line {line}, column {column}: {message}"))
    }
}

/// The five entities XML defines without a DTD.
fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}
