//! Properties of the whole front end: arbitrary input never panics the
//! parser, the instruction layer or the expander.

use kiln::dockerfile::{self, expand};
use proptest::prelude::*;

/// Pieces that exercise the tricky paths: continuations, heredocs, quotes,
/// JSON, flags, directives, variables.
fn dockerfile_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FROM ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ADD ".to_string()),
        Just("ENV ".to_string()),
        Just("ARG ".to_string()),
        Just("LABEL ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("EXPOSE ".to_string()),
        Just("# escape=`\n".to_string()),
        Just("\\\n".to_string()),
        Just("`\n".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'E'".to_string()),
        Just("EOF\n".to_string()),
        Just("--mount=type=cache,target=/x ".to_string()),
        Just("--from=".to_string()),
        Just("[\"a\", ".to_string()),
        Just("]".to_string()),
        Just("${A:-${B}}".to_string()),
        Just("$".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("=".to_string()),
        "[ -~]{0,8}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = dockerfile::parse(&bytes);
    }

    #[test]
    fn dockerfile_like_text_never_panics_the_parser(text in dockerfile_like()) {
        let _ = dockerfile::parse(text.as_bytes());
    }

    #[test]
    fn arbitrary_words_never_panic_the_expander(word in dockerfile_like(), backtick in any::<bool>()) {
        let vars: Vec<String> = vec!["A=1".into(), "B=two words".into(), "EMPTY=".into()];
        let env = vars.as_slice();
        let mut lexer = expand::Lexer::new(if backtick { '`' } else { '\\' });
        let _ = lexer.process_word(&word, &env);
        let _ = lexer.process_words(&word, &env);
        lexer.raw_quotes = true;
        lexer.raw_escapes = true;
        let _ = lexer.process_word(&word, &env);
    }
}
