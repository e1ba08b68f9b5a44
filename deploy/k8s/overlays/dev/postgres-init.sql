-- The dev PostgreSQL's first start: one database and one login per service, closed to
-- the other. The passwords are the fake ones of this overlay's secretGenerator.
CREATE ROLE coordinator LOGIN PASSWORD 'dev-only-not-a-secret';
CREATE ROLE signer LOGIN PASSWORD 'dev-only-not-a-secret';
CREATE DATABASE coordinator OWNER coordinator;
CREATE DATABASE signer OWNER signer;
REVOKE ALL ON DATABASE coordinator FROM PUBLIC;
REVOKE ALL ON DATABASE signer FROM PUBLIC;
