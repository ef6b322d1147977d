-- An API into which keys were imported by their SHA-256 digest (SPEC K2, R4): Keystile cannot see those keys'
-- format, so the verifier must look up a string in its own shape whose checksum fails when the string carries
-- this API's prefix, instead of refusing it without a lookup.
ALTER TABLE apis ADD COLUMN imported_by_digest BOOLEAN NOT NULL DEFAULT FALSE;
