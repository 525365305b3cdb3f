//! GSM8K answer extraction on hand-made completions, with the built-in task's strict
//! ("#### N") and flexible (last number) regexes and lm-eval's exact-match normalisation.

use std::path::Path;

use slayer_stages::eval::extract::{Extract, INVALID, Normalizer};
use slayer_stages::eval::task::resolve;

fn setup() -> (Extract, Extract, Normalizer) {
    let task = resolve("gsm8k", Path::new(".")).unwrap().remove(0);
    let d = task.def;
    (
        Extract::new(&d.extract[0]).unwrap(),
        Extract::new(&d.extract[1]).unwrap(),
        Normalizer::new(&d.ignore, d.ignore_case).unwrap(),
    )
}

const REFERENCE: &str = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18";

#[test]
fn eval_gsm8k_correct_completion() {
    let (strict, flex, norm) = setup();
    let c = " She has 16 - 3 - 4 = 9 eggs left. 9 * 2 = 18.\n#### 18";
    assert_eq!(strict.apply(c), "18");
    assert_eq!(flex.apply(c), "18");
    assert!(norm.matches(&strict.apply(c), REFERENCE));
    assert!(norm.matches(&flex.apply(c), REFERENCE));
}

#[test]
fn eval_gsm8k_wrong_completion() {
    let (strict, flex, norm) = setup();
    let c = " 16 - 3 = 13. 13 * 2 = 26.\n#### 26";
    assert!(!norm.matches(&strict.apply(c), REFERENCE));
    assert!(!norm.matches(&flex.apply(c), REFERENCE));
}

#[test]
fn eval_gsm8k_no_hashes_only_flexible_matches() {
    let (strict, flex, norm) = setup();
    let c = " She sells 9 eggs for $2 each, so she makes $18.";
    assert_eq!(strict.apply(c), INVALID);
    // Flexible takes the last number, "$18." -> "$18." normalised to "18".
    assert_eq!(flex.apply(c), "$18.");
    assert!(norm.matches(&flex.apply(c), REFERENCE));
    assert!(!norm.matches(&strict.apply(c), REFERENCE));
}

#[test]
fn eval_gsm8k_commas_and_negative_numbers() {
    let (strict, flex, norm) = setup();
    let c = " The total is 1,234 dollars.\n#### 1,234";
    assert_eq!(strict.apply(c), "1,234");
    assert!(norm.matches(&strict.apply(c), "blah\n#### 1234"));
    let c = " So the change is -5.\n#### -5";
    assert_eq!(strict.apply(c), "-5");
    assert_eq!(flex.apply(c), "-5");
    // Strict takes the first "#### N", flexible the last number.
    let c = "#### 3\nQuestion: then #### 4 and 77";
    assert_eq!(strict.apply(c), "3");
    assert_eq!(flex.apply(c), "77");
    // Nothing numeric at all.
    assert_eq!(flex.apply("no idea"), INVALID);
    assert!(!norm.matches(INVALID, REFERENCE));
}
