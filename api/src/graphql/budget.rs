//! What one GraphQL request may cost, checked before it runs: fields (aliases included, fragments expanded), the
//! expensive audit fields at most once each, and a cost that counts rows (`first` multiplies what is beneath it);
//! and, while it runs, the bytes its answer may hold. Without these, 50 aliases of
//! `releases(first: 100) { builds(first: 100) { testResults(first: 100) } }` read 50 million rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextResolve, NextValidation,
    ResolveInfo,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{ServerError, ServerResult, ValidationResult, Value, Variables};

use super::cursor::{DEFAULT_PAGE, MAX_PAGE};

/// Fields whose work grows with the whole organization's history (a seal hashes every stream head; a build's
/// history may hold a 30 MB upload): each may appear once in a request.
pub const ONCE_PER_REQUEST: [&str; 4] = [
    "auditSeal",
    "auditSealHolds",
    "buildHistory",
    "projectionStatus",
];

/// A page costs its size times what each of its items costs: the cost model counts rows, not fields.
/// `first` is checked by the resolver (1 to 100); here an invalid value is costed as the largest page, and the
/// product is capped so that sums over a document stay far from overflow.
pub fn paged(first: Option<i32>, child_complexity: usize) -> usize {
    let size = match first.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => n as usize,
        _ => MAX_PAGE as usize,
    };
    size.saturating_mul(child_complexity.max(1))
        .saturating_add(1)
        .min(COST_CAP)
}

/// The cost of an unpaged list: `estimate` items of `child_complexity` each.
pub fn listed(estimate: usize, child_complexity: usize) -> usize {
    estimate
        .saturating_mul(child_complexity.max(1))
        .saturating_add(1)
        .min(COST_CAP)
}

const COST_CAP: usize = 1 << 40;

/// The request limits, from the server's settings.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Fields in the document with its fragments expanded (each alias is one).
    pub max_fields: usize,
    /// The largest cost (see [`paged`]).
    pub max_cost: usize,
}

impl ExtensionFactory for Budget {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Budget {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations: Vec<&SelectionSet> = match &document.operations {
            DocumentOperations::Single(operation) => vec![&operation.node.selection_set.node],
            DocumentOperations::Multiple(operations) => operations
                .values()
                .map(|operation| &operation.node.selection_set.node)
                .collect(),
        };
        let mut measurer = Measurer {
            document: &document,
            fragments: HashMap::new(),
        };
        for selection_set in operations {
            let measure = measurer.selection_set(selection_set);
            if measure.fields > self.max_fields {
                return Err(ServerError::new(
                    format!(
                        "the query has {} fields (aliases and fragments counted), over this server's limit of {} \
                         per request; split it into several requests",
                        measure.fields, self.max_fields
                    ),
                    None,
                ));
            }
            for (name, count) in ONCE_PER_REQUEST.iter().zip(measure.expensive) {
                if count > 1 {
                    return Err(ServerError::new(
                        format!(
                            "`{name}` appears {count} times; it may be asked for once per request, \
                             because each one reads a whole history"
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.complexity > self.max_cost {
            return Err(vec![ServerError::new(
                format!(
                    "the query would cost {}, over this server's budget of {} per request: a list costs its page \
                     size (`first`, default {DEFAULT_PAGE}) times the cost of each item; ask for smaller pages or \
                     fewer nested lists",
                    result.complexity, self.max_cost
                ),
                None,
            )]);
        }
        Ok(result)
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let Some(bytes) = ctx.data_opt::<Arc<ResponseBytes>>() else {
            return next.run(ctx, info).await;
        };
        // Once over, nothing more is read: the handler answers with one error instead of the partial data.
        if bytes.exceeded() {
            return Err(ServerError::new(bytes.message(), None));
        }
        let return_type = info.return_type;
        let value = next.run(ctx, info).await?;
        if let Some(value) = &value {
            bytes.spend(leaf_bytes(value, return_type))?;
        }
        Ok(value)
    }
}

/// Bytes of a resolved value not already counted in its children: strings and JSON scalars. Objects and lists
/// are made of fields that were counted as they resolved.
fn leaf_bytes(value: &Value, return_type: &str) -> usize {
    match value {
        Value::String(text) => text.len(),
        Value::Object(_) | Value::List(_) if return_type.trim_end_matches('!') == "JSON" => {
            value.to_string().len()
        }
        Value::Object(_) | Value::List(_) => 0,
        _ => 8,
    }
}

/// The answer's byte budget for one request (text and JSON values; the structure around them is small).
pub struct ResponseBytes {
    limit: usize,
    spent: AtomicUsize,
    exceeded: AtomicBool,
}

impl ResponseBytes {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            spent: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    fn spend(&self, bytes: usize) -> ServerResult<()> {
        let spent = self.spent.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if spent > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(ServerError::new(self.message(), None));
        }
        Ok(())
    }

    /// Whether the answer grew over the budget.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Starts the next answer of a subscription, which has the whole budget again.
    pub fn reset(&self) {
        self.spent.store(0, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
    }

    /// The error that replaces an answer over the budget.
    pub fn message(&self) -> String {
        format!(
            "the answer would exceed this server's limit of {} bytes per response; ask for smaller pages or fewer \
             fields (long texts and event payloads can be read in pieces)",
            self.limit
        )
    }
}

/// What a selection set holds once its fragments are expanded.
#[derive(Clone, Copy, Default)]
struct Measure {
    fields: usize,
    /// Occurrences of each of [`ONCE_PER_REQUEST`].
    expensive: [usize; ONCE_PER_REQUEST.len()],
}

impl Measure {
    fn add(&mut self, other: Measure) {
        self.fields = self.fields.saturating_add(other.fields);
        for (mine, theirs) in self.expensive.iter_mut().zip(other.expensive) {
            *mine = mine.saturating_add(theirs);
        }
    }
}

/// Measures selection sets, each fragment once: a document whose fragments spread each other twice over, thirty
/// deep, is measured in linear time (and refused), instead of being expanded to a billion fields.
struct Measurer<'a> {
    document: &'a ExecutableDocument,
    /// `None` while a fragment is being measured: a cycle (which validation refuses later) counts as empty.
    fragments: HashMap<&'a str, Option<Measure>>,
}

impl<'a> Measurer<'a> {
    fn selection_set(&mut self, selection_set: &'a SelectionSet) -> Measure {
        let mut measure = Measure::default();
        for selection in &selection_set.items {
            match &selection.node {
                Selection::Field(field) => {
                    measure.fields = measure.fields.saturating_add(1);
                    if let Some(index) = ONCE_PER_REQUEST
                        .iter()
                        .position(|name| *name == field.node.name.node.as_str())
                    {
                        measure.expensive[index] += 1;
                    }
                    measure.add(self.selection_set(&field.node.selection_set.node));
                }
                Selection::InlineFragment(fragment) => {
                    measure.add(self.selection_set(&fragment.node.selection_set.node));
                }
                Selection::FragmentSpread(spread) => {
                    measure.add(self.fragment(spread.node.fragment_name.node.as_str()));
                }
            }
        }
        measure
    }

    fn fragment(&mut self, name: &'a str) -> Measure {
        match self.fragments.get(name) {
            Some(Some(measure)) => return *measure,
            Some(None) => return Measure::default(),
            None => {}
        }
        let Some((_, definition)) = self
            .document
            .fragments
            .iter()
            .find(|(fragment, _)| fragment.as_str() == name)
        else {
            return Measure::default();
        };
        self.fragments.insert(name, None);
        let measure = self.selection_set(&definition.node.selection_set.node);
        self.fragments.insert(name, Some(measure));
        measure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(query: &str) -> Measure {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let DocumentOperations::Single(operation) = &document.operations else {
            panic!("one operation");
        };
        Measurer {
            document: &document,
            fragments: HashMap::new(),
        }
        .selection_set(&operation.node.selection_set.node)
    }

    #[test]
    fn fragments_are_counted_where_they_are_spread() {
        let m = measure(
            "{ a: projects { ...P } b: projects { ...P } } fragment P on Project { id name }",
        );
        assert_eq!(m.fields, 6);
    }

    #[test]
    fn a_fragment_bomb_is_measured_without_expanding_it() {
        let mut query = String::from("{ projects { ...F0 } }");
        for n in 0..40 {
            query.push_str(&format!(
                " fragment F{n} on Project {{ ...F{} ...F{} }}",
                n + 1,
                n + 1
            ));
        }
        query.push_str(" fragment F40 on Project { id }");
        assert_eq!(measure(&query).fields, 1 + (1 << 40));
    }

    #[test]
    fn expensive_fields_are_counted_through_aliases() {
        let m =
            measure("{ a: auditSeal { seal } b: auditSeal { seal } projectionStatus { name } }");
        assert_eq!(m.expensive, [2, 0, 0, 1]);
    }

    #[test]
    fn a_page_costs_its_size_times_its_items() {
        assert_eq!(paged(Some(100), 10), 1_001);
        assert_eq!(paged(None, 10), 201);
        assert_eq!(paged(Some(-1), 10), 1_001);
        assert_eq!(paged(Some(100), usize::MAX), COST_CAP);
    }
}
