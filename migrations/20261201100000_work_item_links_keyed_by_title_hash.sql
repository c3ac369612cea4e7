-- A test's title may be 2,000 characters, and in a script of three bytes a character that is 6,000 bytes: over what
-- one B-tree entry holds (2,704 bytes), so such a title could never be linked to its work item and the link's
-- command failed on every retry. The links are keyed by the title's MD5 instead (immutable, so it can be a
-- generated column; only the project's own titles share the key space). The title itself is kept and compared.
ALTER TABLE read.work_item_links DROP CONSTRAINT work_item_links_pkey;
ALTER TABLE read.work_item_links ADD COLUMN title_md5 text GENERATED ALWAYS AS (md5(title)) STORED;
ALTER TABLE read.work_item_links ADD CONSTRAINT work_item_links_pkey PRIMARY KEY (project_id, title_md5);
