DROP POLICY settings_operations ON notes.settings;
DROP POLICY note_operations ON notes.notes;
