//! Where the bus and the store are: parsed from `--bus` and `--store` once, at start, and
//! displayed the way they are written, so messages quote them back in the user's own form.

use std::fmt;
use std::str::FromStr;

/// The event bus a process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusTarget {
    /// The embedded queue in the data directory.
    Embedded,
    /// Kafka: bootstrap brokers (comma-separated `host:port`) and the events topic.
    Kafka { brokers: String, topic: String },
}

/// The store a process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// The embedded store in the data directory.
    Embedded,
    /// ClickHouse over HTTP: `host:port` of its HTTP interface, and the database.
    ClickHouse { address: String, database: String },
}

impl FromStr for BusTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "embedded" {
            return Ok(Self::Embedded);
        }
        let usage = "write `embedded` or `kafka://HOST:PORT[,HOST:PORT]/TOPIC`";
        let rest = text
            .strip_prefix("kafka://")
            .ok_or_else(|| format!("unknown bus {text:?}; {usage}"))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| format!("no topic in {text:?}; {usage}"))?;
        if !brokers.split(',').all(is_host_port) {
            return Err(format!(
                "brokers in {text:?} must be HOST:PORT, comma-separated; {usage}"
            ));
        }
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "topic in {text:?} must be letters, digits, . _ or -; {usage}"
            ));
        }
        Ok(Self::Kafka {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

impl FromStr for StoreTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "embedded" {
            return Ok(Self::Embedded);
        }
        let usage =
            "write `embedded` or `clickhouse://HOST:PORT/DATABASE` (the HTTP port, usually 8123)";
        let rest = text
            .strip_prefix("clickhouse://")
            .ok_or_else(|| format!("unknown store {text:?}; {usage}"))?;
        let (address, database) = rest
            .split_once('/')
            .ok_or_else(|| format!("no database in {text:?}; {usage}"))?;
        if !is_host_port(address) {
            return Err(format!("address in {text:?} must be HOST:PORT; {usage}"));
        }
        // The rule ClickHouseStore::connect applies, checked here so a typo fails at start.
        if !scribble_store::is_plain_identifier(database) {
            return Err(format!(
                "database in {text:?} must be letters, digits or _, not starting with a digit; {usage}"
            ));
        }
        Ok(Self::ClickHouse {
            address: address.to_owned(),
            database: database.to_owned(),
        })
    }
}

/// Whether `text` is `HOST:PORT` with a non-empty host and a port number.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

impl fmt::Display for BusTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Kafka { brokers, topic } => write!(f, "kafka://{brokers}/{topic}"),
        }
    }
}

impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::ClickHouse { address, database } => {
                write!(f, "clickhouse://{address}/{database}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_targets_parse_or_say_what_to_write() {
        assert_eq!("embedded".parse(), Ok(BusTarget::Embedded));
        assert_eq!(
            "kafka://k1:9092,k2:9092/scribble-events".parse(),
            Ok(BusTarget::Kafka {
                brokers: "k1:9092,k2:9092".into(),
                topic: "scribble-events".into()
            })
        );
        for bad in [
            "kafka",
            "kafka://k1:9092",
            "kafka://k1/events",
            "kafka://k1:9092/ev ents",
            "redis://x:1/y",
        ] {
            let error = bad.parse::<BusTarget>().unwrap_err();
            assert!(error.contains("kafka://HOST:PORT"), "{bad}: {error}");
        }
    }

    #[test]
    fn store_targets_parse_or_say_what_to_write() {
        assert_eq!(
            "clickhouse://127.0.0.1:8123/scribble".parse(),
            Ok(StoreTarget::ClickHouse {
                address: "127.0.0.1:8123".into(),
                database: "scribble".into()
            })
        );
        for bad in [
            "clickhouse://host/db",
            "clickhouse://host:8123/",
            "clickhouse://host:8123/my-db",
            "clickhouse://host:8123/1db",
            "postgres://x:1/y",
        ] {
            let error = bad.parse::<StoreTarget>().unwrap_err();
            assert!(
                error.contains("clickhouse://HOST:PORT/DATABASE"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn targets_display_as_they_are_written() {
        for text in ["embedded", "kafka://k1:9092,k2:9092/scribble-events"] {
            assert_eq!(text.parse::<BusTarget>().unwrap().to_string(), text);
        }
        for text in ["embedded", "clickhouse://127.0.0.1:8123/scribble"] {
            assert_eq!(text.parse::<StoreTarget>().unwrap().to_string(), text);
        }
    }
}
