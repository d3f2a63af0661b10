//! `meridian kv get|put|del|scan|cas|watch`: read and write keys through
//! [`meridian_client::Client`] (`watch` through `GET /v1/watch`, see [`crate::watch_cmd`]).
//!
//! Errors end the command with a non-zero exit and `error: <code>: <message>` on stderr (the
//! client's errors print as `<code>: <message>`, so no context is added to them). `cas` exits 1
//! when the comparison fails.

use anyhow::bail;
use meridian_client::{Client, Consistency, KeyValue, ScanOptions};
use std::io::{Read, Write};

/// Keys asked for per page when `scan` pages through a prefix.
const SCAN_PAGE_KEYS: u64 = 1000;

/// Largest value `put` reads from stdin; the server refuses larger values anyway.
const STDIN_VALUE_BYTES_MAX: u64 = 64 << 20;

#[derive(clap::Args)]
pub struct KvArgs {
    #[command(subcommand)]
    cmd: KvCmd,
    #[command(flatten)]
    target: Target,
}

/// Where a client command goes and how it prints: shared by `kv`, `lease`, `stream`, `queue`
/// and `placement`.
#[derive(clap::Args)]
pub struct Target {
    /// Nodes to talk to (comma-separated host:port); any node serves any request, the first
    /// that answers is used.
    #[arg(
        long,
        global = true,
        env = "MERIDIAN_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// How to print answers.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(clap::Subcommand)]
enum KvCmd {
    /// Print the value of a key.
    Get {
        key: String,
        /// linearizable, lease, bounded:<ms> (or bounded:<n>s), local or serializable.
        #[arg(long, value_parser = parse_consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Write a value (read from stdin when VALUE is left out); prints the revision.
    Put {
        key: String,
        value: Option<String>,
        /// Attach the key to this lease (`meridian lease grant`): it is deleted when the lease
        /// ends. `0x` hexadecimal or decimal.
        #[arg(long, value_parser = crate::lease_cmd::parse_id)]
        lease: Option<i64>,
    },
    /// Print every change to KEY (or to every key starting with it) as it happens, until
    /// Ctrl-C; resumes by itself when a node goes away.
    Watch {
        key: String,
        /// Watch every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Start with the changes since this revision (history first, then live).
        #[arg(long)]
        from_revision: Option<u64>,
        /// Include each key's previous value (JSON output).
        #[arg(long)]
        prev_kv: bool,
    },
    /// Delete a key, or every key starting with it; prints how many were deleted.
    Del {
        key: String,
        /// Delete every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Print keys and values (`key value` lines) in key order.
    Scan {
        /// Only keys starting with this [default: every key].
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys [default: all].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Start after this key (exclusive).
        #[arg(long)]
        after: Option<String>,
        /// linearizable, lease, bounded:<ms> (or bounded:<n>s), local or serializable.
        #[arg(long, value_parser = parse_consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Compare-and-set: write NEW only if KEY holds OLD (--expect) or does not exist
    /// (--expect-absent). Prints `ok` (exit 0) or `failed` (exit 1).
    #[command(group(clap::ArgGroup::new("expectation").required(true).args(["expect", "expect_absent"])))]
    Cas {
        key: String,
        new: String,
        /// The value KEY must hold.
        #[arg(long)]
        expect: Option<String>,
        /// KEY must not exist.
        #[arg(long)]
        expect_absent: bool,
    },
}

/// How a command prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Parses `--consistency`: linearizable, lease, bounded:<ms> (or bounded:<n>ms, bounded:<n>s),
/// local or serializable.
pub fn parse_consistency(s: &str) -> Result<Consistency, String> {
    s.parse::<Consistency>().map_err(|e| e.to_string())
}

/// `get --output json`: the HTTP API's shape, the key's fields then the read's revision.
#[derive(serde::Serialize)]
struct GetJson<'a> {
    #[serde(flatten)]
    kv: &'a KeyValue,
    revision: u64,
    /// The most the answer may miss (ms), when the server said.
    #[serde(skip_serializing_if = "Option::is_none")]
    staleness_ms: Option<u64>,
}

/// `scan --output json`, like `GET /v1/kv?prefix=`; `count` is the number of keys printed.
#[derive(serde::Serialize)]
struct ScanJson<'a> {
    kvs: &'a [KeyValue],
    more: bool,
    count: usize,
    revision: u64,
}

pub async fn run(args: KvArgs) -> anyhow::Result<()> {
    if let KvCmd::Watch {
        key,
        prefix,
        from_revision,
        prev_kv,
    } = args.cmd
    {
        return crate::watch_cmd::run(crate::watch_cmd::WatchArgs {
            endpoints: args.target.endpoints,
            key,
            prefix,
            from_revision,
            prev_kv,
            output: args.target.output,
        })
        .await;
    }
    let client = Client::connect(args.target.endpoints)?;
    let out = args.target.output;
    match args.cmd {
        KvCmd::Watch { .. } => unreachable!("served above"),
        KvCmd::Get { key, consistency } => get(&client, out, &key, consistency).await,
        KvCmd::Put { key, value, lease } => {
            let value = match value {
                Some(v) => v.into_bytes(),
                None => read_stdin()?,
            };
            let revision = match lease {
                Some(l) => client.put_with_lease(&key, &value, l).await?,
                None => client.put(&key, &value).await?,
            };
            match out {
                Output::Text => println!("{revision}"),
                Output::Json => println!("{}", serde_json::json!({ "revision": revision })),
            }
            Ok(())
        }
        KvCmd::Del { key, prefix } => {
            let r = if prefix {
                client.delete_prefix(&key).await?
            } else {
                client.delete(&key).await?
            };
            match out {
                Output::Text => println!("{}", r.deleted),
                Output::Json => println!("{}", serde_json::to_string(&r)?),
            }
            Ok(())
        }
        KvCmd::Scan {
            prefix,
            limit,
            after,
            consistency,
        } => {
            let opts = ScanOptions {
                prefix: prefix.into_bytes(),
                after: after.map(String::into_bytes),
                consistency,
                ..Default::default()
            };
            scan(&client, out, opts, limit).await
        }
        KvCmd::Cas {
            key,
            new,
            expect,
            expect_absent,
        } => {
            let expected = if expect_absent {
                None
            } else {
                expect.map(String::into_bytes)
            };
            let r = client
                .compare_and_set(&key, expected.as_deref(), &new)
                .await?;
            match out {
                Output::Text => println!("{}", if r.succeeded { "ok" } else { "failed" }),
                Output::Json => println!("{}", serde_json::to_string(&r)?),
            }
            if !r.succeeded {
                // Not an error worth an `error:` line: the answer is "no", told by the exit code.
                std::io::stdout().flush()?;
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn get(
    client: &Client,
    out: Output,
    key: &str,
    consistency: Consistency,
) -> anyhow::Result<()> {
    let r = client.get_with_revision(key, consistency).await?;
    let Some(kv) = r.kv else {
        bail!("key_not_found: key {key:?} does not exist");
    };
    let mut stdout = std::io::stdout().lock();
    match out {
        Output::Text => {
            stdout.write_all(&kv.value)?;
            stdout.write_all(b"\n")?;
        }
        Output::Json => {
            let j = GetJson {
                kv: &kv,
                revision: r.revision,
                staleness_ms: r.staleness_ms,
            };
            writeln!(stdout, "{}", serde_json::to_string(&j)?)?;
        }
    }
    Ok(())
}

/// Pages through the keys of `opts` at one revision, up to `limit` keys.
async fn scan(
    client: &Client,
    out: Output,
    mut opts: ScanOptions,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    let mut kvs: Vec<KeyValue> = Vec::new();
    let mut revision = 0;
    let mut more;
    let mut stdout = std::io::stdout().lock();
    loop {
        let wanted = limit.map_or(SCAN_PAGE_KEYS, |l| {
            (l - kvs.len() as u64).min(SCAN_PAGE_KEYS)
        });
        opts.limit = wanted;
        let page = client.scan_with(&opts).await?;
        if revision == 0 {
            // Later pages read the snapshot of the first.
            revision = page.revision;
            opts.revision = revision;
        }
        more = page.more;
        if out == Output::Text {
            for kv in &page.kvs {
                stdout.write_all(&kv.key)?;
                stdout.write_all(b" ")?;
                stdout.write_all(&kv.value)?;
                stdout.write_all(b"\n")?;
            }
        }
        let last = page.kvs.last().map(|kv| kv.key.clone());
        let got = page.kvs.len() as u64;
        kvs.extend(page.kvs);
        let reached_limit = limit.is_some_and(|l| kvs.len() as u64 >= l);
        match last {
            Some(last) if more && !reached_limit && got > 0 => opts.after = Some(last),
            _ => break,
        }
    }
    match out {
        Output::Text => {
            if more && let Some(last) = kvs.last() {
                eprintln!(
                    "(more keys follow; continue with --after {:?})",
                    last.key_str()
                );
            }
        }
        Output::Json => {
            let j = ScanJson {
                count: kvs.len(),
                kvs: &kvs,
                more,
                revision,
            };
            writeln!(stdout, "{}", serde_json::to_string(&j)?)?;
        }
    }
    Ok(())
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    std::io::stdin()
        .take(STDIN_VALUE_BYTES_MAX + 1)
        .read_to_end(&mut value)?;
    if value.len() as u64 > STDIN_VALUE_BYTES_MAX {
        bail!("value_too_large: the value on stdin is larger than {STDIN_VALUE_BYTES_MAX} bytes");
    }
    Ok(value)
}
