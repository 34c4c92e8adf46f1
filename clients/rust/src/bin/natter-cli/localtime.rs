//! Timestamps for people: the wire's milliseconds since the Unix epoch as dates.
//!
//! The local offset comes from the `time` crate, which asks the C library (`localtime_r`)
//! for each timestamp, so `TZ`, the system's zone database and daylight saving time are
//! honoured without a zone parser of our own. That call is sound because nothing in this
//! program changes the environment (`set_var` needs `unsafe`, which the workspace forbids).

use time::{OffsetDateTime, UtcOffset};

/// `ms` as a local `YYYY-MM-DD HH:MM`; in UTC, marked so, when the offset cannot be known.
pub fn local(ms: u64) -> String {
    let Some(utc) = instant(ms) else {
        return format!("{ms} ms after 1970");
    };
    let local = UtcOffset::local_offset_at(utc)
        .ok()
        .and_then(|offset| utc.checked_to_offset(offset));
    match local {
        Some(local) => minutes(local),
        None => format!("{} UTC", minutes(utc)),
    }
}

/// `ms` as RFC 3339 in UTC with milliseconds (`2025-12-31T23:59:00.000Z`), for JSON.
pub fn iso(ms: u64) -> Option<String> {
    let at = instant(ms)?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    ))
}

/// [`iso`] for a time that is 0 when there is none (`last_seen` of a user never seen).
pub fn iso_or_null(ms: u64) -> serde_json::Value {
    match ms {
        0 => serde_json::Value::Null,
        ms => iso(ms).into(),
    }
}

fn instant(ms: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Minutes are enough to read a conversation; JSON keeps the milliseconds.
fn minutes(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

    use super::*;

    /// The spec's `presence_offline` vector: 2025-12-31 23:59 UTC.
    const NEW_YEAR: u64 = 1_767_225_540_000;

    fn at(ms: u64, hours: i8, minutes_: i8) -> String {
        let offset = UtcOffset::from_hms(hours, minutes_, 0).unwrap();
        minutes(instant(ms).unwrap().to_offset(offset))
    }

    #[test]
    fn dates_follow_the_offset_across_midnight_and_year() {
        assert_eq!(at(NEW_YEAR, 0, 0), "2025-12-31 23:59");
        assert_eq!(at(NEW_YEAR, 1, 0), "2026-01-01 00:59");
        assert_eq!(at(NEW_YEAR, -5, 0), "2025-12-31 18:59");
        assert_eq!(at(NEW_YEAR, 5, 30), "2026-01-01 05:29");
        assert_eq!(at(0, 0, 0), "1970-01-01 00:00");
        // A leap day.
        assert_eq!(at(1_709_208_000_000, 0, 0), "2024-02-29 12:00");
    }

    #[test]
    fn iso_is_utc_with_milliseconds() {
        assert_eq!(iso(NEW_YEAR + 84).unwrap(), "2025-12-31T23:59:00.084Z");
        assert_eq!(iso(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_or_null(0), serde_json::Value::Null);
        assert_eq!(iso_or_null(NEW_YEAR), "2025-12-31T23:59:00.000Z");
    }

    #[test]
    fn out_of_range_times_are_printed_not_panicked_on() {
        assert_eq!(iso(u64::MAX), None);
        assert_eq!(local(u64::MAX), format!("{} ms after 1970", u64::MAX));
        // The last representable minute stays printable whatever the local offset.
        assert!(local(253_402_300_799_000).starts_with("99"));
    }
}
