-- PostfixAdmin 3.3's PostgreSQL tables for aliases and mailboxes (Debian 12 postfixadmin,
-- public/upgrade.php, upgrade_2_pgsql): domain, alias, mailbox. Shared by the sql_entries tests,
-- the fleet_sql Molecule scenario and the SQL fleet bench.
CREATE TABLE domain (
    domain character varying(255) NOT NULL,
    description character varying(255) NOT NULL default '',
    aliases integer NOT NULL default 0,
    mailboxes integer NOT NULL default 0,
    maxquota integer NOT NULL default 0,
    quota integer NOT NULL default 0,
    transport character varying(255) default NULL,
    backupmx boolean NOT NULL default false,
    created timestamp with time zone default now(),
    modified timestamp with time zone default now(),
    active boolean NOT NULL default true,
    Constraint "domain_key" Primary Key ("domain"));
CREATE TABLE alias (
    address character varying(255) NOT NULL,
    goto text NOT NULL,
    domain character varying(255) NOT NULL REFERENCES "domain",
    created timestamp with time zone default now(),
    modified timestamp with time zone default now(),
    active boolean NOT NULL default true,
    Constraint "alias_key" Primary Key ("address"));
CREATE INDEX alias_address_active ON alias(address,active);
CREATE TABLE mailbox (
    username character varying(255) NOT NULL,
    password character varying(255) NOT NULL default '',
    name character varying(255) NOT NULL default '',
    maildir character varying(255) NOT NULL default '',
    quota integer NOT NULL default 0,
    domain character varying(255) NOT NULL REFERENCES "domain",
    created timestamp with time zone default now(),
    modified timestamp with time zone default now(),
    active boolean NOT NULL default true,
    Constraint "mailbox_key" Primary Key ("username"));
