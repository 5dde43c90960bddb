-- Claims look for due deliveries per endpoint only, so the global due index goes: each index
-- over the short-lived unfinished rows costs a write on every hand-off and every finish.
DROP INDEX deliveries_due;
