//! [`Refusal`]: the job as configured cannot run against these tables, this server or this log.
//! Found before anything moved (pre-flight, the server's grants at connect, another job's
//! log), so nothing changed; the CLI exits with the configuration-error code.

/// A refusal found before anything moved; its text says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    /// One refusal listing every finding: the finding itself when there is one, else a line
    /// saying how many, then one indented line each.
    pub fn findings(findings: Vec<String>) -> Refusal {
        assert!(!findings.is_empty(), "a refusal has a reason");
        if findings.len() == 1 {
            return Refusal(findings.into_iter().next().expect("one finding"));
        }
        let list: Vec<String> = findings.iter().map(|f| format!("  - {f}")).collect();
        Refusal(format!(
            "the job is refused before any row moves, for {} reasons (fix each, then run again):\n{}",
            findings.len(),
            list.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn a_refusal_lists_every_finding() {
        let one = Refusal::findings(vec!["only this".into()]);
        assert_eq!(one.to_string(), "only this");
        let two = Refusal::findings(vec!["first".into(), "second".into()]).to_string();
        assert_eq!(
            two,
            "the job is refused before any row moves, for 2 reasons (fix each, then run again):\n  - first\n  - second"
        );
    }
}
