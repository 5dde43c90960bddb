-- A contact's custom fields (WHAZING's extraInfo): a JSON array of {name, value}.
ALTER TABLE contacts ADD COLUMN extra_info TEXT NOT NULL DEFAULT '[]';
