//! The control protocol: one command per line written to `/.lossyfs-control`, each answered
//! by one line of JSON read back from the same file.
//!
//! Commands: `lose-power`, `lose-power tear SEED`, `eio add SUBSTRING`, `eio clear`, `stats`.
//! A handle reads the results of the commands written through it; a handle that wrote none
//! (`cat` after `echo stats >`) reads the results of the last command written through any.
//! A malformed command also fails the write with EINVAL.

/// A control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Undo everything not durable; with a seed, tear each file's last unsynced append.
    LosePower {
        /// The tear seed, when tearing.
        tear: Option<u64>,
    },
    /// Fail reads, writes and fsyncs of open files whose path contains this, with EIO.
    EioAdd(String),
    /// Drop every EIO rule.
    EioClear,
    /// Counts of what is not durable.
    Stats,
}

impl Command {
    /// Parses one line (already trimmed).
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["lose-power"] => Ok(Command::LosePower { tear: None }),
            ["lose-power", "tear", seed] => {
                let seed = seed.parse().map_err(|_| format!("tear seed {seed:?} is not a u64"))?;
                Ok(Command::LosePower { tear: Some(seed) })
            }
            ["eio", "clear"] => Ok(Command::EioClear),
            ["eio", "add", _, ..] => {
                // The substring is the rest of the line, spaces included.
                let rule = line.trim_start_matches("eio").trim_start().trim_start_matches("add").trim();
                Ok(Command::EioAdd(rule.to_string()))
            }
            ["stats"] => Ok(Command::Stats),
            _ => Err(format!(
                "unknown command {line:?}: expected lose-power [tear SEED], eio add SUBSTRING, eio clear or stats"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(Command::parse("lose-power"), Ok(Command::LosePower { tear: None }));
        assert_eq!(Command::parse("lose-power tear 42"), Ok(Command::LosePower { tear: Some(42) }));
        assert_eq!(Command::parse("eio add /db/000012.log"), Ok(Command::EioAdd("/db/000012.log".into())));
        assert_eq!(Command::parse("eio add a b"), Ok(Command::EioAdd("a b".into())));
        assert_eq!(Command::parse("eio clear"), Ok(Command::EioClear));
        assert_eq!(Command::parse("stats"), Ok(Command::Stats));
        assert!(Command::parse("lose-power tear x").is_err());
        assert!(Command::parse("eio add").is_err());
        assert!(Command::parse("reboot").is_err());
    }
}
