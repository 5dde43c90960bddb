-- One index over an endpoint's deliveries instead of two. `deliveries_webhook` (endpoint, seq)
-- and `deliveries_log_webhook` (endpoint, creation time, then seq as the rowid) ordered the
-- same rows, and each insert and each finish wrote both. The endpoint's list of deliveries
-- now pages by (creation time, seq), along `deliveries_log_webhook`.
DROP INDEX deliveries_webhook;
