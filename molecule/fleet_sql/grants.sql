-- After the PostfixAdmin tables (prepare.yml): the domain and who may do what.
INSERT INTO domain (domain) VALUES ('example.tld');
-- Postfix only reads; the writer changes alias rows (sql_entries reads them FOR UPDATE and
-- mailbox for keep_mailbox_aliases).
GRANT SELECT ON alias TO :"reader";
GRANT SELECT, INSERT, UPDATE, DELETE ON alias TO :"writer";
GRANT SELECT ON domain, mailbox TO :"writer";
