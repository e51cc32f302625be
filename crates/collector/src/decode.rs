//! Request bodies to raw events, without HTTP: undo `Content-Encoding` under a size cap, then
//! split the JSON into one raw text per event. The accepted shapes are one event object, an array
//! of events, or `{"batch": [...]}`.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::CollectorError;

/// Most events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// The body as JSON bytes: as sent when `encoding` is absent or `identity`, inflated when it is
/// gzip. Inflating stops one byte past `max_inflated`, so a gzip bomb costs at most that much
/// memory and time before it is refused.
pub fn decompress<'a>(
    body: &'a [u8],
    encoding: Option<&str>,
    max_inflated: usize,
) -> Result<Cow<'a, [u8]>, CollectorError> {
    let Some(encoding) = encoding.map(str::trim) else {
        return Ok(Cow::Borrowed(body));
    };
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(body));
    }
    if !(encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip")) {
        return Err(CollectorError::UnsupportedEncoding(encoding.to_owned()));
    }
    let mut inflated = Vec::new();
    MultiGzDecoder::new(body)
        .take(max_inflated as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(CollectorError::InvalidGzip)?;
    if inflated.len() > max_inflated {
        return Err(CollectorError::InflatedTooLarge {
            limit: max_inflated,
        });
    }
    Ok(Cow::Owned(inflated))
}

/// The `{"batch": [...]}` wrapper; any other top-level object is a single event.
#[derive(Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
}

/// Splits a JSON body into the raw text of each event, in order. Events stay unparsed (their
/// nesting is not limited here, so depth is judged per event by validation); the body as a whole
/// must be valid JSON, hold at least one event and at most [`MAX_EVENTS_PER_REQUEST`].
pub fn split_events(json: &[u8]) -> Result<Vec<&RawValue>, CollectorError> {
    let whole: &RawValue = serde_json::from_slice(json).map_err(CollectorError::InvalidJson)?;
    let text = whole.get();
    let events = if text.starts_with('[') {
        serde_json::from_str(text).map_err(CollectorError::InvalidJson)?
    } else if text.starts_with('{') {
        let wrapper: Wrapper =
            serde_json::from_str(text).map_err(|_| CollectorError::InvalidBatch)?;
        wrapper.batch.unwrap_or_else(|| vec![whole])
    } else {
        // A scalar: validation rejects it as index 0 with a sentence about the expected object.
        vec![whole]
    };
    if events.is_empty() {
        return Err(CollectorError::EmptyBatch);
    }
    if events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(CollectorError::TooManyEvents {
            count: events.len(),
            limit: MAX_EVENTS_PER_REQUEST,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn texts(json: &str) -> Vec<String> {
        split_events(json.as_bytes())
            .unwrap()
            .iter()
            .map(|raw| raw.get().to_owned())
            .collect()
    }

    #[test]
    fn plain_and_identity_bodies_pass_through_unchanged() {
        for encoding in [None, Some("identity"), Some(" ")] {
            let body = decompress(b"[1]", encoding, 10).unwrap();
            assert!(matches!(body, Cow::Borrowed(b"[1]")), "{encoding:?}");
        }
    }

    #[test]
    fn gzip_is_inflated_whatever_the_case_of_its_name() {
        let packed = gzip(br#"{"touchpoint":"x"}"#);
        for encoding in ["gzip", "GZIP", "x-gzip"] {
            let body = decompress(&packed, Some(encoding), 1024).unwrap();
            assert_eq!(&*body, br#"{"touchpoint":"x"}"#);
        }
    }

    #[test]
    fn gzip_bomb_is_cut_off_at_the_cap() {
        let packed = gzip(&vec![0; 20 * 1024 * 1024]);
        let error = decompress(&packed, Some("gzip"), 5 * 1024 * 1024).unwrap_err();
        assert!(
            matches!(error, CollectorError::InflatedTooLarge { limit } if limit == 5 * 1024 * 1024)
        );
    }

    #[test]
    fn body_exactly_at_the_cap_is_accepted() {
        let packed = gzip(&[b' '; 100]);
        assert_eq!(decompress(&packed, Some("gzip"), 100).unwrap().len(), 100);
    }

    #[test]
    fn broken_gzip_and_other_encodings_are_refused() {
        assert!(matches!(
            decompress(b"not gzip", Some("gzip"), 100),
            Err(CollectorError::InvalidGzip(_))
        ));
        assert!(matches!(
            decompress(b"{}", Some("br"), 100),
            Err(CollectorError::UnsupportedEncoding(name)) if name == "br"
        ));
    }

    #[test]
    fn the_three_shapes_give_the_same_events() {
        let one = r#"{"touchpoint": "a", "anonymous_id": "c"}"#;
        assert_eq!(texts(&format!("  {one}\n")), vec![one]);
        assert_eq!(texts(&format!("[{one}, {one}]")), vec![one, one]);
        assert_eq!(
            texts(&format!(r#"{{"batch": [{one}], "sent_at": 1}}"#)),
            vec![one]
        );
    }

    #[test]
    fn scalars_and_null_batches_are_single_events_for_validation_to_judge() {
        assert_eq!(texts("42"), vec!["42"]);
        assert_eq!(texts(r#"{"batch": null}"#), vec![r#"{"batch": null}"#]);
    }

    #[test]
    fn bad_json_reports_where() {
        let Err(CollectorError::InvalidJson(source)) = split_events(b"[{\"a\": 1},\n {\"b\": }]")
        else {
            panic!("expected invalid_json");
        };
        assert_eq!((source.line(), source.column()), (2, 8));
    }

    #[test]
    fn batch_must_be_an_array() {
        assert!(matches!(
            split_events(br#"{"batch": {"touchpoint": "x"}}"#),
            Err(CollectorError::InvalidBatch)
        ));
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        assert!(matches!(
            split_events(b"[]"),
            Err(CollectorError::EmptyBatch)
        ));
        assert!(matches!(
            split_events(br#"{"batch": []}"#),
            Err(CollectorError::EmptyBatch)
        ));
        let many = format!("[{}]", vec!["{}"; MAX_EVENTS_PER_REQUEST + 1].join(","));
        assert!(matches!(
            split_events(many.as_bytes()),
            Err(CollectorError::TooManyEvents { count, .. }) if count == MAX_EVENTS_PER_REQUEST + 1
        ));
    }

    #[test]
    fn deep_events_are_split_not_refused() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let body = format!(r#"[{deep}, {{"touchpoint": "a"}}]"#);
        assert_eq!(split_events(body.as_bytes()).unwrap().len(), 2);
    }
}
