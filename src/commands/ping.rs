//! `ping` → `{"pong":true,"server_time":"…"}`.

use serde_json::json;

use super::{args::Args, to_raw, Outcome};
use crate::protocol::{timestamp_now, ErrorBody};

/// Answers a ping.
pub fn run(args: Args) -> Result<Outcome, ErrorBody> {
    args.finish()?;
    Ok(Outcome::Reply(to_raw(&json!({ "pong": true, "server_time": timestamp_now() }))))
}
