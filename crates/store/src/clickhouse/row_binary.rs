//! Rows read from ClickHouse's RowBinary bytes as they stream in, chunk by chunk, into a few
//! large buffers instead of a `String` or a `Vec` per field: journey fragment rows (`identity,
//! keys`) and identity override rows (`identity, customer, version`). A million fragment rows
//! land in one text of identities and a few blocks of keys, and no chunk outlives its reading.
//! Holding the whole response and then a copy of it cost the fetch of 10M touchpoints more in
//! fresh memory than the reading itself, one array of keys copied each time it doubled cost
//! more again, and freeing 1.3M override strings took longer than reading them.

use ::clickhouse::query::Query;

use crate::StoreError;

/// A kind of row, read into `Self` one row at a time.
pub(super) trait ReadRows: Default {
    /// Reads the row at the start of `bytes`: the bytes after it, or `None` when `bytes` end
    /// inside it (then nothing is read).
    fn read_row<'a>(&mut self, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, StoreError>;
}

/// The rows `query` selects, of the kind `R` reads, read as the response streams in.
pub(super) async fn fetch_rows<R: ReadRows>(query: Query) -> Result<R, StoreError> {
    let mut response = query.fetch_bytes("RowBinary")?;
    let mut stream = RowStream::<R>::default();
    while let Some(chunk) = response.next().await? {
        stream.read(&chunk)?;
    }
    stream.finish()
}

/// Rows of the kind `R` reads from a response's chunks; a row cut between two chunks is
/// completed by the second.
#[derive(Debug, Default)]
struct RowStream<R> {
    rows: R,
    /// The start of a row the last chunk cut off.
    partial: Vec<u8>,
}

impl<R: ReadRows> RowStream<R> {
    /// Reads `chunk`, the next bytes of the response.
    fn read(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if self.partial.is_empty() {
            let used = read_rows(&mut self.rows, chunk)?;
            self.partial.extend_from_slice(&chunk[used..]);
        } else {
            self.partial.extend_from_slice(chunk);
            let used = read_rows(&mut self.rows, &self.partial)?;
            self.partial.drain(..used);
        }
        Ok(())
    }

    /// The rows, once the response has ended; an error when it ended inside a row.
    fn finish(self) -> Result<R, StoreError> {
        if !self.partial.is_empty() {
            return Err(::clickhouse::error::Error::NotEnoughData.into());
        }
        Ok(self.rows)
    }
}

/// Reads the whole rows at the start of `bytes` into `rows`; the number of bytes they took.
fn read_rows(rows: &mut impl ReadRows, bytes: &[u8]) -> Result<usize, StoreError> {
    let mut rest = bytes;
    while let Some(after) = rows.read_row(rest)? {
        rest = after;
    }
    Ok(bytes.len() - rest.len())
}

/// Keys per block: 8 MB, or one row's keys when they are more.
const KEYS_PER_BLOCK: usize = 1 << 20;

/// Journey fragment rows: each an identity and its packed keys.
#[derive(Debug, Default)]
pub(super) struct FragmentRows {
    identities: String,
    /// Every row's keys lie within one block.
    key_blocks: Vec<Vec<u64>>,
    rows: Vec<FragmentAt>,
}

/// Where one fragment row lies: its identity ends at `identity_end` in the identities (it
/// starts where the row before ends), its keys are `key_count` keys from `first_key` in block
/// `block`.
#[derive(Debug, Clone, Copy)]
struct FragmentAt {
    identity_end: usize,
    block: u32,
    first_key: u32,
    key_count: u32,
}

/// One fragment row: its identity's text and its packed keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FragmentRow<'a> {
    pub identity: &'a str,
    pub keys: &'a [u64],
}

impl FragmentRows {
    /// The rows, in the order they came.
    pub(super) fn rows(&self) -> Vec<FragmentRow<'_>> {
        let mut identity_start = 0;
        self.rows
            .iter()
            .map(|row| {
                let identity = &self.identities[identity_start..row.identity_end];
                identity_start = row.identity_end;
                let first_key = row.first_key as usize;
                FragmentRow {
                    identity,
                    keys: &self.key_blocks[row.block as usize]
                        [first_key..first_key + row.key_count as usize],
                }
            })
            .collect()
    }
}

impl ReadRows for FragmentRows {
    fn read_row<'a>(&mut self, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, StoreError> {
        let Some((identity, rest)) = sized(bytes, 1)? else {
            return Ok(None);
        };
        let Some((keys, rest)) = sized(rest, 8)? else {
            return Ok(None);
        };
        self.identities.push_str(text(identity)?);
        let key_count = keys.len() / 8;
        let full = self
            .key_blocks
            .last()
            .is_none_or(|block| block.capacity() - block.len() < key_count);
        if full {
            self.key_blocks
                .push(Vec::with_capacity(KEYS_PER_BLOCK.max(key_count)));
        }
        let block = self.key_blocks.len() - 1;
        let keys_block = &mut self.key_blocks[block];
        let first_key = keys_block.len();
        keys_block.extend(
            keys.chunks_exact(8)
                .map(|key| u64::from_le_bytes(key.try_into().expect("chunks of 8 bytes"))),
        );
        let too_long = || {
            ::clickhouse::error::Error::BadResponse(
                "a journey fragment row with over 4 billion keys".to_owned(),
            )
        };
        self.rows.push(FragmentAt {
            identity_end: self.identities.len(),
            block: u32::try_from(block).map_err(|_| too_long())?,
            first_key: u32::try_from(first_key).map_err(|_| too_long())?,
            key_count: u32::try_from(key_count).map_err(|_| too_long())?,
        });
        Ok(Some(rest))
    }
}

/// Identity override rows: each an identity, its customer and the version that named it.
#[derive(Debug, Default)]
pub(super) struct OverrideRows {
    /// Each row's identity then its customer, one after another.
    text: String,
    rows: Vec<OverrideAt>,
}

/// Where one override row lies: its identity ends at `identity_end` in the text (it starts
/// where the row before ends), and its customer follows up to `customer_end`.
#[derive(Debug, Clone, Copy)]
struct OverrideAt {
    identity_end: usize,
    customer_end: usize,
    version: u64,
}

/// One override row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OverrideRow<'a> {
    pub identity: &'a str,
    pub customer: &'a str,
    pub version: u64,
}

impl OverrideRows {
    /// The rows, in the order they came.
    pub(super) fn rows(&self) -> impl Iterator<Item = OverrideRow<'_>> {
        let mut start = 0;
        self.rows.iter().map(move |row| {
            let identity = &self.text[start..row.identity_end];
            start = row.customer_end;
            OverrideRow {
                identity,
                customer: &self.text[row.identity_end..row.customer_end],
                version: row.version,
            }
        })
    }

    /// Rows as `(identity, customer, version)`, as if read.
    #[cfg(test)]
    pub(super) fn from_rows(rows: &[(&str, &str, u64)]) -> Self {
        let mut read = Self::default();
        for &(identity, customer, version) in rows {
            read.push(identity, customer, version);
        }
        read
    }

    fn push(&mut self, identity: &str, customer: &str, version: u64) {
        self.text.push_str(identity);
        let identity_end = self.text.len();
        self.text.push_str(customer);
        self.rows.push(OverrideAt {
            identity_end,
            customer_end: self.text.len(),
            version,
        });
    }
}

impl ReadRows for OverrideRows {
    fn read_row<'a>(&mut self, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, StoreError> {
        let Some((identity, rest)) = sized(bytes, 1)? else {
            return Ok(None);
        };
        let Some((customer, rest)) = sized(rest, 1)? else {
            return Ok(None);
        };
        let Some((version, rest)) = rest.split_first_chunk::<8>() else {
            return Ok(None);
        };
        self.push(
            text(identity)?,
            text(customer)?,
            u64::from_le_bytes(*version),
        );
        Ok(Some(rest))
    }
}

/// `bytes` as text.
fn text(bytes: &[u8]) -> Result<&str, StoreError> {
    Ok(std::str::from_utf8(bytes).map_err(::clickhouse::error::Error::from)?)
}

/// Bytes taken off the front, and the bytes after them.
type Split<'a> = (&'a [u8], &'a [u8]);

/// A RowBinary length (LEB128) at the start of `bytes` and that many items of `item_size`
/// bytes after it, then the bytes after those; `None` when `bytes` end before they do.
fn sized(bytes: &[u8], item_size: usize) -> Result<Option<Split<'_>>, StoreError> {
    let mut length = 0usize;
    for (index, &byte) in bytes.iter().enumerate() {
        let shift = 7 * index;
        if shift >= usize::BITS as usize {
            return Err(::clickhouse::error::Error::BadResponse(
                "a RowBinary length longer than a machine word".to_owned(),
            )
            .into());
        }
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let rest = &bytes[index + 1..];
            return Ok(length
                .checked_mul(item_size)
                .filter(|&size| size <= rest.len())
                .map(|size| rest.split_at(size)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as ClickHouse writes it in RowBinary, appended to `response`.
    fn write_row(response: &mut Vec<u8>, identity: &str, keys: &[u64]) {
        leb128(response, identity.len());
        response.extend(identity.as_bytes());
        leb128(response, keys.len());
        for key in keys {
            response.extend(key.to_le_bytes());
        }
    }

    fn leb128(response: &mut Vec<u8>, mut value: usize) {
        while value >= 0x80 {
            response.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        response.push(value as u8);
    }

    /// Two rows, the first long enough that its lengths take two LEB128 bytes each.
    fn response() -> (Vec<u8>, String, Vec<u64>) {
        let long_name = "u:".to_owned() + &"x".repeat(200);
        let many_keys: Vec<u64> = (0..300).map(|n| n << 40 | n).collect();
        let mut response = Vec::new();
        write_row(&mut response, &long_name, &many_keys);
        write_row(&mut response, "a:bob", &[7]);
        write_row(&mut response, "a:zed", &[]);
        (response, long_name, many_keys)
    }

    #[test]
    fn rows_cut_anywhere_between_chunks_read_whole() {
        let (response, long_name, many_keys) = response();
        for chunk_size in [1, 2, 3, 7, 64, 4096] {
            let mut stream = RowStream::<FragmentRows>::default();
            for chunk in response.chunks(chunk_size) {
                stream.read(chunk).unwrap();
            }
            let rows = stream.finish().unwrap();
            let expected = vec![
                FragmentRow {
                    identity: &long_name,
                    keys: &many_keys,
                },
                FragmentRow {
                    identity: "a:bob",
                    keys: &[7],
                },
                FragmentRow {
                    identity: "a:zed",
                    keys: &[],
                },
            ];
            assert_eq!(rows.rows(), expected, "chunks of {chunk_size}");
        }
    }

    #[test]
    fn a_response_that_ends_inside_a_row_is_an_error() {
        let (response, ..) = response();
        for cut in [1, 9, response.len() - 1] {
            let mut stream = RowStream::<FragmentRows>::default();
            stream.read(&response[..cut]).unwrap();
            assert!(
                stream.finish().is_err(),
                "a response cut to {cut} bytes read as whole rows"
            );
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error() {
        let mut response = vec![2, 0xff, 0xfe, 0];
        let mut stream = RowStream::<FragmentRows>::default();
        assert!(stream.read(&response).is_err());
        response[1] = b'a';
        response[2] = b':';
        let mut stream = RowStream::<FragmentRows>::default();
        stream.read(&response).unwrap();
        assert_eq!(stream.finish().unwrap().rows()[0].identity, "a:");
    }

    #[test]
    fn rows_beyond_one_block_of_keys_keep_their_keys() {
        let sizes = [600_000, 600_000, KEYS_PER_BLOCK + 1, 3, 0];
        let rows_keys: Vec<Vec<u64>> = sizes
            .iter()
            .enumerate()
            .map(|(row, &size)| (0..size as u64).map(|key| key * 7 + row as u64).collect())
            .collect();
        let mut response = Vec::new();
        for (row, keys) in rows_keys.iter().enumerate() {
            write_row(&mut response, &format!("a:{row}"), keys);
        }
        let mut stream = RowStream::<FragmentRows>::default();
        for chunk in response.chunks(4096) {
            stream.read(chunk).unwrap();
        }
        let rows = stream.finish().unwrap();
        let read = rows.rows();
        assert_eq!(read.len(), sizes.len());
        for (row, (read, keys)) in read.iter().zip(&rows_keys).enumerate() {
            assert_eq!(read.identity, format!("a:{row}"));
            assert!(read.keys == keys.as_slice(), "row {row}'s keys differ");
        }
    }

    #[test]
    fn override_rows_cut_anywhere_read_whole() {
        let mut response = Vec::new();
        for (identity, customer, version) in [("a:zed", "u:ann", 3u64), ("u:ann", "u:ann", 300)] {
            for text in [identity, customer] {
                leb128(&mut response, text.len());
                response.extend(text.as_bytes());
            }
            response.extend(version.to_le_bytes());
        }
        for chunk_size in [1, 5, 4096] {
            let mut stream = RowStream::<OverrideRows>::default();
            for chunk in response.chunks(chunk_size) {
                stream.read(chunk).unwrap();
            }
            let rows = stream.finish().unwrap();
            let row = |identity, customer, version| OverrideRow {
                identity,
                customer,
                version,
            };
            assert_eq!(
                rows.rows().collect::<Vec<_>>(),
                vec![row("a:zed", "u:ann", 3), row("u:ann", "u:ann", 300)],
                "chunks of {chunk_size}"
            );
        }
        let mut stream = RowStream::<OverrideRows>::default();
        stream.read(&response[..response.len() - 1]).unwrap();
        assert!(stream.finish().is_err(), "a version cut short read whole");
    }

    #[test]
    fn a_length_longer_than_a_machine_word_is_an_error() {
        let mut response = vec![0x80; 10];
        response.push(0);
        let mut stream = RowStream::<FragmentRows>::default();
        assert!(stream.read(&response).is_err());
    }
}
