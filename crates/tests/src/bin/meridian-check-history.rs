//! `meridian-check-history FILE...`: checks Jepsen-shaped histories (JSON lines, see
//! `meridian_tests::jepsen`) for linearizability per key, lost acknowledged writes and
//! availability by fault window; prints the report and writes `FILE.report.txt` and
//! `FILE.report.json` beside each file.
//!
//! Exit status: 0 every history valid, 1 some history invalid, 2 a file could not be read or is
//! malformed (the message starts with a stable code: `io`, `parse`, `malformed`).

use meridian_tests::checker::check_file;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() || files.iter().any(|f| f == "-h" || f == "--help") {
        eprintln!("usage: meridian-check-history HISTORY.jsonl...");
        return ExitCode::from(2);
    }
    let mut status = 0u8;
    for f in &files {
        match check_file(f) {
            Ok(report) => {
                print!("{}", report.text());
                match report.write_beside(f) {
                    Ok((txt, json)) => {
                        println!("report: {} and {}", txt.display(), json.display())
                    }
                    Err(e) => {
                        eprintln!("io: write the report beside {}: {e}", f.display());
                        status = status.max(2);
                    }
                }
                if !report.valid {
                    status = status.max(1);
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                status = 2;
            }
        }
    }
    ExitCode::from(status)
}
