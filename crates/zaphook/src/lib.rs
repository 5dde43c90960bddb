//! zaphook: a self-hosted WhatsApp helpdesk core that tells other systems, as signed webhooks
//! in the WHAZING payload shape, about every message and ticket change, without losing one.

pub mod api;
pub mod app;
pub mod backup;
pub mod channels;
pub mod clock;
pub mod delivery;
pub mod domain;
pub mod ingest;
pub mod jitter;
pub mod listen;
pub mod payload;
pub mod replay;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod ui;
