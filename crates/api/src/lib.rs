//! API: the HTTP surface (status, webhooks, rebuild, metrics, the web page); it sees the controller only through model types.
#![forbid(unsafe_code)]
