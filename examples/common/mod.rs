//! Small helpers shared by the examples: their command-line pieces (`cli`, on clap), the
//! values their flags take (`units`), the process's peak RSS and the contract's sample frame.
//! Each example uses a subset, hence `dead_code` is allowed.
#![allow(dead_code)]

pub mod cli;
pub mod units;

/// A field of `/proc/self/status` in KiB (`VmHWM` is peak RSS, `VmRSS` current RSS);
/// 0 where /proc is not available.
pub fn proc_status_kb(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Raises the soft limit on open files to the hard limit (what the administrator allows).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer, which
    // lives on this stack frame for the duration of both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::debug!("could not raise the open-file limit");
            }
        }
    }
}

// ----- the sample frame of the contract's client ------------------------------------------

use serde_json::{Value, json};

const EYES: [&str; 3] = ["brown", "green", "blue"];
const FRUITS: [&str; 3] = ["apple", "banana", "strawberry"];

/// One sample user record, about 1.2 KB of JSON.
pub fn record(i: usize) -> Value {
    json!({
        "_id": format!("5f1d7c2e9b{i:014x}"),
        "isactive": i % 3 != 0,
        "balance": format!("${},{:03}.{:02}", 1 + i % 9, (i * 37) % 1000, (i * 7) % 100),
        "picture": "http://placehold.it/32x32",
        "age": 20 + i % 45,
        "eyecolor": EYES[i % 3],
        "name": "Marguerite Okonkwo",
        "gender": "female",
        "company": "HIGHWATER",
        "email": "m.okonkwo@highwater.example",
        "phone": "+1 (915) 555-0142",
        "address": "418 Tidewater Lane, Port Orchard, WA 98366",
        "about": "Marguerite maintains the flow-control layer of a message broker and keeps a \
                  notebook of every outage she has seen caused by an unbounded queue. She likes to \
                  say that a buffer is a promise to remember something for someone who may never \
                  come back for it, and that a high-water mark is the moment you admit it. On \
                  weekends she restores wooden sailboats: a hull takes on water at the rate the sea \
                  decides, and the pump had better say when it cannot keep up. She asks for a test \
                  that fails before the fix and refuses any timeout nobody can explain.",
        "registered": "2019-04-11T09:26:53 -02:00",
        "latitude": 47.540_231 + (i % 100) as f64 * 1e-4,
        "longitude": -122.636_118 - (i % 100) as f64 * 1e-4,
        "tags": ["backpressure", "tcp", "queues", "mio", "rust"],
        "friends": [
            {"id": 0, "name": "Teodor Vasquez"},
            {"id": 1, "name": "Ines Abernathy"},
            {"id": 2, "name": "Kwame Rosen"}
        ],
        "greeting": "Hello, Marguerite! You have 7 unread messages.",
        "favoritefruit": FRUITS[i % 3]
    })
}

/// One frame's payload: a JSON array of `records` sample records (50 make about 61 KB).
pub fn sample_frame(records: usize) -> Vec<u8> {
    let batch: Vec<Value> = (0..records).map(record).collect();
    serde_json::to_vec(&batch).unwrap_or_default()
}
