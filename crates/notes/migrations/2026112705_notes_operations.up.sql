-- `tenet check` counts late notes per tenant (the compliance view) as the owner
-- role, across tenants: reading rows only, whose sections are sealed.
CREATE POLICY note_operations ON notes.notes FOR SELECT TO tenet_owner USING (true);
CREATE POLICY settings_operations ON notes.settings FOR SELECT TO tenet_owner USING (true);
