DROP TABLE notes.renditions;
ALTER TABLE notes.settings DROP COLUMN pdf_identifiers;
DROP TYPE notes.pdf_identifier;
