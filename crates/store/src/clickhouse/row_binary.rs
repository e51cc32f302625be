//! Journey fragment rows (`SELECT identity, keys`: a `String` and an `Array(UInt64)`) read from
//! ClickHouse's RowBinary bytes as they stream in, chunk by chunk. A million rows land in one
//! text of identities and one array of keys instead of a `String` and a `Vec` each, and no
//! chunk outlives its reading: holding the whole response and then a copy of it cost the fetch
//! of 10M touchpoints more in fresh memory than the reading itself.

use crate::StoreError;

/// Fragment rows read so far.
#[derive(Debug, Default)]
pub(super) struct FragmentRows {
    identities: String,
    keys: Vec<u64>,
    /// Per row, where its identity and its keys start; the next row's starts end them.
    starts: Vec<(usize, usize)>,
    /// The start of a row the last chunk cut off, completed by the next chunk.
    partial: Vec<u8>,
}

/// One fragment row: its identity's text and its packed keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FragmentRow<'a> {
    pub identity: &'a str,
    pub keys: &'a [u64],
}

/// What a row's bytes turned out to be.
enum Read<'a> {
    /// A whole row: its identity's bytes, its keys' bytes, and the bytes after it.
    Row(&'a [u8], &'a [u8], &'a [u8]),
    /// The bytes end inside the row.
    Cut,
}

impl FragmentRows {
    /// Reads `chunk`, the next bytes of the response.
    pub(super) fn read(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if self.partial.is_empty() {
            let used = self.read_rows(chunk)?;
            self.partial.extend_from_slice(&chunk[used..]);
            return Ok(());
        }
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(chunk);
        let used = self.read_rows(&bytes)?;
        bytes.drain(..used);
        self.partial = bytes;
        Ok(())
    }

    /// The rows, once the response has ended; an error when it ended inside a row.
    pub(super) fn finish(&self) -> Result<Vec<FragmentRow<'_>>, StoreError> {
        if !self.partial.is_empty() {
            return Err(::clickhouse::error::Error::NotEnoughData.into());
        }
        let ends = self
            .starts
            .iter()
            .skip(1)
            .copied()
            .chain([(self.identities.len(), self.keys.len())]);
        Ok(self
            .starts
            .iter()
            .zip(ends)
            .map(
                |(&(identity, keys), (identity_end, keys_end))| FragmentRow {
                    identity: &self.identities[identity..identity_end],
                    keys: &self.keys[keys..keys_end],
                },
            )
            .collect())
    }

    /// Reads the whole rows at the start of `bytes`; the number of bytes they took.
    fn read_rows(&mut self, bytes: &[u8]) -> Result<usize, StoreError> {
        let mut rest = bytes;
        while let Read::Row(identity, keys, after) = row(rest)? {
            let identity =
                std::str::from_utf8(identity).map_err(::clickhouse::error::Error::from)?;
            self.starts.push((self.identities.len(), self.keys.len()));
            self.identities.push_str(identity);
            self.keys.extend(
                keys.chunks_exact(8)
                    .map(|key| u64::from_le_bytes(key.try_into().expect("chunks of 8 bytes"))),
            );
            rest = after;
        }
        Ok(bytes.len() - rest.len())
    }
}

/// The row at the start of `bytes`: its identity bytes, its key bytes and the bytes after it.
fn row(bytes: &[u8]) -> Result<Read<'_>, StoreError> {
    let Some((identity, rest)) = sized(bytes, 1)? else {
        return Ok(Read::Cut);
    };
    let Some((keys, rest)) = sized(rest, 8)? else {
        return Ok(Read::Cut);
    };
    Ok(Read::Row(identity, keys, rest))
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
            let mut rows = FragmentRows::default();
            for chunk in response.chunks(chunk_size) {
                rows.read(chunk).unwrap();
            }
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
            assert_eq!(rows.finish().unwrap(), expected, "chunks of {chunk_size}");
        }
    }

    #[test]
    fn a_response_that_ends_inside_a_row_is_an_error() {
        let (response, ..) = response();
        for cut in [1, 9, response.len() - 1] {
            let mut rows = FragmentRows::default();
            rows.read(&response[..cut]).unwrap();
            assert!(
                rows.finish().is_err(),
                "a response cut to {cut} bytes read as whole rows"
            );
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error() {
        let mut response = vec![2, 0xff, 0xfe, 0];
        let mut rows = FragmentRows::default();
        assert!(rows.read(&response).is_err());
        response[1] = b'a';
        response[2] = b':';
        let mut rows = FragmentRows::default();
        rows.read(&response).unwrap();
        assert_eq!(rows.finish().unwrap()[0].identity, "a:");
    }
}
