//! Topic names, topic filters and matching (MQTT 3.1.1 §4.7, MQTT 5 §4.7).
//!
//! Pure functions, no I/O. rumqttc has its own `matches`, but it refuses `$SYS/x` against
//! `$SYS/#`, which MQTT allows; only wildcards at the first level must not match `$` topics.

/// A topic name a client may publish to: not empty, no wildcards, no NUL, at most 65535 bytes.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}

/// A topic filter a client may subscribe to: `+` fills a whole level, `#` only as the whole
/// last level.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last_index = levels.len() - 1;
    levels
        .iter()
        .enumerate()
        .all(|(index, level)| match *level {
            "+" => true,
            "#" => index == last_index,
            other => !other.contains(['+', '#']),
        })
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid topic filter).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    // a filter starting with a wildcard does not match topics starting with '$'
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        if filter_level == "#" {
            // "a/#" matches "a" too (the parent level)
            return true;
        }
        match topic_levels.next() {
            None => return false,
            Some(topic_level) => {
                if filter_level != "+" && filter_level != topic_level {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("metaward/v1/devices/0012ab34cd56ef78/obs"));
        assert!(valid_topic_name("/"));
        assert!(valid_topic_name("$SYS/broker"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/+/c"));
        assert!(!valid_topic_name("a/#"));
        assert!(!valid_topic_name("a\0b"));
    }

    #[test]
    fn topic_filters() {
        for good in [
            "#", "+", "a/b", "a/+/c", "a/#", "+/+/#", "/", "a//b", "$SYS/#",
        ] {
            assert!(valid_topic_filter(good), "{good}");
        }
        for bad in ["", "a/#/c", "a#", "a/b#", "a+/b", "a/+b", "##", "a/#/"] {
            assert!(!valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/b/c", "a/b/c", true),
            ("a/b/c", "a/b/d", false),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/c/d", false),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("+", "a", true),
            ("+", "a/b", false),
            ("+/+", "/a", true),
            ("#", "a/b/c", true),
            ("#", "/", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            (
                "metaward/v1/devices/+/obs",
                "metaward/v1/devices/dev-1/obs",
                true,
            ),
            (
                "metaward/v1/devices/+/obs",
                "metaward/v1/devices/dev-1/cmd",
                false,
            ),
            // '$' topics are not matched by a wildcard at the first level
            ("#", "$SYS/broker", false),
            ("+/broker", "$SYS/broker", false),
            ("$SYS/#", "$SYS/broker", true),
            ("$SYS/+", "$SYS/broker", true),
            ("a/#", "a/$b", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                filter_matches(filter, topic),
                expected,
                "{filter} vs {topic}"
            );
        }
    }
}
