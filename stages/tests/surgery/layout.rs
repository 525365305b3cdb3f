//! The layout notation (issue 5, acceptance 2): every Table 3 string parses, prints back
//! canonically and yields the documented block counts; malformed layouts are rejected
//! with messages that say where and what was expected; plans built from layouts place
//! the right blocks.

use slayer_stages::surgery::{
    BlockSource, ExpandOptions, Init, LayerPlan, Layout, Merge, SurgeryError,
};

/// (layout, source blocks, output blocks, trainable blocks, deleted blocks)
const TABLE3: [(&str, usize, usize, usize, usize); 7] = [
    ("(4+1)x8", 32, 40, 8, 0),
    ("(2+1)x8|16", 32, 40, 8, 0),
    ("(2+1)x8|16◇", 32, 40, 8, 0),
    ("16|(2+1)x8", 32, 40, 8, 0),
    ("(2+1)x3 (4+1)x3 (7+1)x2", 32, 40, 8, 0),
    ("(2+1)x8|13|1◇", 32, 38, 9, 2),
    ("(2+1)x6|17|1◇", 32, 36, 7, 2),
];

#[test]
fn table3_layouts_parse_print_back_and_count() {
    for (text, source, out, trainable, deleted) in TABLE3 {
        let layout = Layout::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(layout.to_string(), text, "canonical form");
        assert_eq!(Layout::parse(&layout.to_ascii()).unwrap(), layout);
        assert_eq!(layout.deleted_blocks(source).unwrap(), deleted, "{text}");
        let plan = LayerPlan::expand(&layout, source, ExpandOptions::default()).unwrap();
        assert_eq!(plan.len(), out, "{text}: output blocks");
        assert_eq!(layout.output_blocks(), out, "{text}");
        assert_eq!(
            plan.trainable().len(),
            trainable,
            "{text}: trainable blocks"
        );
        assert_eq!(layout.trainable_blocks(), trainable, "{text}");
        assert_eq!(plan.deleted.len(), deleted, "{text}");
    }
}

#[test]
fn ascii_spellings_mean_the_same() {
    let pairs = [
        ("(2+1)×8|13|1◇", "(2+1)x8|13|1◇"),
        ("(2+1)X8 | 13 | 1 <>", "(2+1)x8|13|1◇"),
        ("(2+1)x8|16avg", "(2+1)x8|16◇"),
        ("(2+1)x8|16 AVG", "(2+1)x8|16◇"),
        ("(2+1)*3|(4+1)x3|(7+1)x2", "(2+1)x3 (4+1)x3 (7+1)x2"),
        ("  ( 2 + 1 ) x 8  16 ", "(2+1)x8|16"),
    ];
    for (written, canonical) in pairs {
        let l = Layout::parse(written).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(l.to_string(), canonical, "{written}");
    }
}

fn syntax_error(text: &str) -> (usize, String) {
    match Layout::parse(text) {
        Err(SurgeryError::Syntax {
            column, message, ..
        }) => (column, message),
        Err(other) => panic!("{text}: unexpected error kind {other}"),
        Ok(l) => panic!("{text}: parsed as {l}"),
    }
}

#[test]
fn malformed_layouts_are_rejected_with_clear_messages() {
    // (layout, column, a fragment of the message)
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty layout"),
        ("   ", 1, "empty layout"),
        ("(2+1", 5, "expected `)` to close `(2+1`"),
        ("(2+1)x", 7, "expected a repeat count after `x`"),
        ("(0+1)x8", 2, "at least 1 original block"),
        ("(2+2)x8", 4, "exactly one new block"),
        ("(2+1)x0", 7, "repeat count must be at least 1"),
        ("8|8", 3, "two block counts in a row (`8|8`): write `16`"),
        ("(2+1)x8||16", 9, "empty segment between two `|`"),
        ("(2+1)x8|16◇◇", 12, "given twice"),
        ("(2+1)x8◇|16", 9, "must come last"),
        ("(2-1)x8", 3, "unexpected character `-`"),
        ("(2+1)x8|16 extra", 12, "unexpected character `e`"),
        ("0", 1, "a count of 0 blocks"),
        ("(2+1)x99999999999", 7, "number too large"),
        ("|16", 1, "empty segment"),
        ("(2+1)x8|", 9, "expected a segment after the last `|`"),
        (
            "(+1)x8",
            2,
            "expected the number of original blocks after `(`",
        ),
        ("16x2", 3, "needs a group in parentheses"),
        ("(2+1)x8(2+1)x8", 8, "expected `|`, a space or the end"),
        ("◇", 1, "must come after the last segment"),
        (
            "(2+1)x8)",
            8,
            "expected `|`, a space or the end after a segment, found `)`",
        ),
        ("x8", 1, "`x` must follow a group"),
    ];
    for (text, col, fragment) in cases {
        let (column, message) = syntax_error(text);
        assert!(
            message.contains(fragment),
            "{text:?}: message {message:?} lacks {fragment:?}"
        );
        assert_eq!(column, *col, "{text:?}: column ({message})");
    }
}

#[test]
fn syntax_errors_render_layout_message_and_column() {
    let err = Layout::parse("(2+1)x").unwrap_err().to_string();
    assert_eq!(
        err,
        "layout `(2+1)x`: expected a repeat count after `x`, found the end (column 7)"
    );
}

#[test]
fn wrong_block_count_shows_the_arithmetic() {
    let l = Layout::parse("(2+1)x8|16").unwrap();
    let err = l.deleted_blocks(30).unwrap_err().to_string();
    assert_eq!(
        err,
        "layout `(2+1)x8|16` covers 32 original blocks (2x8 + 16), model has 30"
    );
    let l = Layout::parse("(2+1)x8|13|1◇").unwrap();
    let err = l.deleted_blocks(29).unwrap_err().to_string();
    assert!(
        err.contains("keeps 30 original blocks (2x8 + 13 + 1), model has only 29"),
        "{err}"
    );
    let err = l.deleted_blocks(30).unwrap_err().to_string();
    assert!(err.contains("no block is deleted"), "{err}");
    let err = LayerPlan::expand(&l, 30, ExpandOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("keeps all 30 original blocks"), "{err}");
}

#[test]
fn s_strategy_plan_places_new_and_merged_blocks() {
    let l = Layout::parse("(2+1)x8|13|1◇").unwrap();
    let plan = LayerPlan::expand(&l, 32, ExpandOptions::default()).unwrap();
    assert_eq!(plan.len(), 38);
    assert_eq!(plan.trainable(), vec![2, 5, 8, 11, 14, 17, 20, 23, 37]);
    assert_eq!(
        plan.blocks[2].source,
        BlockSource::Average { of: [1, 2] },
        "◇: first new block averages source blocks 1 and 2"
    );
    assert!(plan.blocks[2].zeroed);
    assert_eq!(plan.blocks[24].source, BlockSource::Original { index: 16 });
    assert_eq!(plan.blocks[36].source, BlockSource::Original { index: 28 });
    assert_eq!(
        plan.blocks[37].source,
        BlockSource::Merge { of: vec![30, 31] }
    );
    assert!(!plan.blocks[37].zeroed);
    assert_eq!(plan.deleted, vec![30, 31]);

    let with_final = ExpandOptions {
        merge: Merge::WithFinal,
        ..Default::default()
    };
    let plan = LayerPlan::expand(&l, 32, with_final).unwrap();
    assert_eq!(
        plan.blocks[37].source,
        BlockSource::Merge {
            of: vec![29, 30, 31]
        }
    );
}

#[test]
fn copy_init_and_average_at_the_last_block() {
    let l = Layout::parse("(4+1)x8").unwrap();
    let plan = LayerPlan::expand(&l, 32, ExpandOptions::default()).unwrap();
    assert_eq!(plan.blocks[4].source, BlockSource::Copy { of: 3 });
    assert_eq!(plan.blocks[39].source, BlockSource::Copy { of: 31 });

    let avg = ExpandOptions {
        init: Some(Init::Average),
        ..Default::default()
    };
    let plan = LayerPlan::expand(&l, 32, avg).unwrap();
    assert_eq!(plan.blocks[4].source, BlockSource::Average { of: [3, 4] });
    // Nothing follows block 31: the last new block falls back to a copy, and says so.
    assert_eq!(plan.blocks[39].source, BlockSource::Copy { of: 31 });
    assert!(
        plan.blocks[39]
            .note
            .as_deref()
            .unwrap_or("")
            .contains("copied")
    );
}

#[test]
fn copy_init_contradicting_the_mark_is_an_error() {
    let l = Layout::parse("(2+1)x8|16◇").unwrap();
    let opts = ExpandOptions {
        init: Some(Init::Copy),
        ..Default::default()
    };
    let err = LayerPlan::expand(&l, 32, opts).unwrap_err().to_string();
    assert!(err.contains("init: average"), "{err}");
}

#[test]
fn plan_hash_depends_on_the_plan() {
    let a = Layout::parse("(2+1)x8|16").unwrap();
    let b = Layout::parse("(2+1)x8|16◇").unwrap();
    let pa = LayerPlan::expand(&a, 32, ExpandOptions::default()).unwrap();
    let pb = LayerPlan::expand(&b, 32, ExpandOptions::default()).unwrap();
    assert_ne!(pa.hash(), pb.hash());
    assert_eq!(pa.hash(), pa.clone().hash());
    assert_eq!(pa.hash().len(), 64);
}

#[test]
fn prune_plans() {
    let plan = LayerPlan::prune(10, &[8, 9], Merge::Discarded).unwrap();
    assert_eq!(plan.len(), 8);
    assert_eq!(plan.blocks[7].source, BlockSource::Merge { of: vec![8, 9] });
    assert_eq!(plan.trainable(), vec![7]);

    let plan = LayerPlan::prune(10, &[3], Merge::None).unwrap();
    assert_eq!(plan.len(), 9);
    assert_eq!(plan.blocks[3].source, BlockSource::Original { index: 4 });
    assert!(plan.trainable().is_empty());

    let err = LayerPlan::prune(10, &[3], Merge::Discarded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("merge: none"), "{err}");
    let err = LayerPlan::prune(10, &[10], Merge::None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot remove block 10"), "{err}");
}
