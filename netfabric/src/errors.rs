//! How errors are said: one line for a log field or the CLI's `error:`.

/// The message of an error and its causes, `outer: inner: root`, each said
/// once: many errors already end with their source's text (`reading X:
/// <io error>`), which `{:#}` would repeat.
pub fn error_message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn error_messages_say_each_cause_once() {
        let io = anyhow::Error::new(StoreError::Io {
            action: "reading",
            path: "/x/state.json".into(),
            source: std::io::Error::other("boom"),
        })
        .context("creating owner a");
        assert_eq!(
            format!("{io:#}"),
            "creating owner a: reading /x/state.json: boom: boom"
        );
        assert_eq!(
            error_message(&io),
            "creating owner a: reading /x/state.json: boom"
        );
        let plain = anyhow::anyhow!("root").context("outer");
        assert_eq!(error_message(&plain), "outer: root");
    }
}
