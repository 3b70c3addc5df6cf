//! A load report from Pub/Sub (any bytes): decoded as the monitor decodes it, then observed by
//! the fleet table and planned from; nothing may panic.
#![no_main]

use firesfu::fleet::proto::LoadReport;
use firesfu::fleet::table::FleetTable;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = LoadReport::decode(data) else {
        return;
    };
    let mut table = FleetTable::new(3_000);
    let now = 1_800_000_000_000;
    table.observe(&report, now);
    table.observe(&report, now + 1);
    let _ = table.candidates(now + 2);
    let _ = table.alive_count(now + 2);
    let _ = table.feed_is_fresh(now + 2);
    table.prune(now + 10_000);
});
