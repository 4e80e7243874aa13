-- The database Postfix reads: its roles and database; prepare.yml adds PostfixAdmin 3.3's
-- tables (tests/postfixadmin.sql) and then grants.sql.
-- Run by prepare.yml as postgres with psql variables reader, reader_pw, writer, writer_pw, db.
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_pw';
CREATE ROLE :"writer" LOGIN PASSWORD :'writer_pw';
CREATE DATABASE :"db";
\connect :"db"
