//! Where the bus and the store are: parsed from `--bus` and `--store` once, at start.

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
    /// ClickHouse over HTTP: base URL and database.
    ClickHouse { url: String, database: String },
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
        let valid_brokers = !brokers.is_empty()
            && brokers.split(',').all(|broker| {
                broker
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            });
        if !valid_brokers {
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
        if address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(format!("address in {text:?} must be HOST:PORT; {usage}"));
        }
        if database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "database in {text:?} must be letters, digits or _; {usage}"
            ));
        }
        Ok(Self::ClickHouse {
            url: format!("http://{address}"),
            database: database.to_owned(),
        })
    }
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
            Self::ClickHouse { url, database } => write!(f, "{url}/{database}"),
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
                url: "http://127.0.0.1:8123".into(),
                database: "scribble".into()
            })
        );
        for bad in [
            "clickhouse://host/db",
            "clickhouse://host:8123/",
            "clickhouse://host:8123/my-db",
            "postgres://x:1/y",
        ] {
            let error = bad.parse::<StoreTarget>().unwrap_err();
            assert!(
                error.contains("clickhouse://HOST:PORT/DATABASE"),
                "{bad}: {error}"
            );
        }
    }
}
