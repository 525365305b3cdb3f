//! Log-likelihood scoring against a naive reference: the batched, left-padded,
//! prefix-shared computation in `eval::lm` must equal scoring each `context +
//! continuation` on its own (tiny Llama fixture, byte-level tokenizer); rolling
//! perplexity must equal scoring each of lm-eval's windows on its own.

use burn::prelude::*;
use slayer_stages::eval::lm::{Encoder, Group, score_groups};
use slayer_stages::eval::perplexity::{Document, rolling_windows, score_documents};
use slayer_stages::model::{Cpu, Llama, Tokenizer, load_pretrained, token_logprobs};

use crate::support::{fixtures, tiny_model_dir};

fn naive(model: &Llama<Cpu>, g: &Group) -> Vec<(f64, bool)> {
    g.continuations
        .iter()
        .map(|c| {
            let mut seq = g.context.clone();
            seq.extend_from_slice(c);
            let lp = token_logprobs(model, &[seq.clone()]).unwrap();
            let n = g.context.len();
            let ll: f64 = lp[0][n - 1..].iter().map(|&x| x as f64).sum();
            let ids: Vec<i64> = seq.iter().map(|&x| x as i64).collect();
            let t = Tensor::<Cpu, 2, Int>::from_data(
                TensorData::new(ids, [1, seq.len()]),
                &Default::default(),
            );
            let arg = model
                .forward(t)
                .argmax(2)
                .into_data()
                .convert::<i64>()
                .into_vec::<i64>()
                .unwrap();
            let greedy = (0..c.len()).all(|j| arg[n - 1 + j] == c[j] as i64);
            (ll, greedy)
        })
        .collect()
}

fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 33) % 250) as u32 + 1
}

#[test]
fn eval_batched_prefix_scoring_matches_naive() {
    let dir = tempfile::tempdir().unwrap();
    let model: Llama<Cpu> =
        load_pretrained(&tiny_model_dir(dir.path()), &Default::default()).unwrap();
    let mut s = 7u64;
    let mut groups = Vec::new();
    for i in 0..9usize {
        let ctx_len = 1 + (i * 7) % 23;
        let context: Vec<u32> = (0..ctx_len).map(|_| lcg(&mut s)).collect();
        let k = 1 + i % 4;
        let continuations = (0..k)
            .map(|j| (0..1 + (i + j * 3) % 6).map(|_| lcg(&mut s)).collect())
            .collect();
        groups.push(Group {
            context,
            continuations,
        });
    }
    let want: Vec<Vec<(f64, bool)>> = groups.iter().map(|g| naive(&model, g)).collect();
    for batch in [1, 3, 7, 64] {
        let got = score_groups(&model, &groups, batch, |_| {}).unwrap();
        for (gi, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len());
            for (c, (ll, greedy)) in g.iter().zip(w) {
                assert!(
                    (c.loglik - ll).abs() < 1e-4,
                    "batch {batch} group {gi}: {} vs naive {ll}",
                    c.loglik
                );
                assert_eq!(c.is_greedy, *greedy, "batch {batch} group {gi}");
            }
        }
    }
}

#[test]
fn eval_encode_pair_moves_trailing_space_like_lm_eval() {
    let tok = Tokenizer::from_file(&fixtures().join("eval/byte_tokenizer.json")).unwrap();
    let enc = Encoder {
        tok: &tok,
        add_special: false,
        prefix_id: 0,
        max_len: 16,
    };
    // "Answer: " + "x" is scored as "Answer:" + " x".
    let g = enc
        .encode_group("Answer: ", &["x".to_string(), "yz".to_string()])
        .unwrap();
    assert_eq!(g.context, tok.encode("Answer:", false).unwrap());
    assert_eq!(g.continuations[0], tok.encode(" x", false).unwrap());
    assert_eq!(g.continuations[1], tok.encode(" yz", false).unwrap());
    // Empty context: the prefix token stands in.
    let g = enc.encode_group("", &["ab".to_string()]).unwrap();
    assert_eq!(g.context, vec![0]);
    // Left truncation keeps at most max_len + 1 tokens in all.
    let long = "a".repeat(40);
    let g = enc.encode_group(&long, &["bcd".to_string()]).unwrap();
    assert_eq!(g.context.len() + 3, 17);
}

/// Rolling perplexity (batched, right-padded, head on scored rows only, windows of one
/// document spread over batches) equals scoring every window on its own, and a
/// document that fits one window equals scoring `prefix + tokens` in one pass.
#[test]
fn eval_rolling_perplexity_matches_naive_windows() {
    let dir = tempfile::tempdir().unwrap();
    let model: Llama<Cpu> =
        load_pretrained(&tiny_model_dir(dir.path()), &Default::default()).unwrap();
    let (prefix, max_len) = (3u32, 16usize);
    let mut s = 11u64;
    let docs: Vec<Document> = [0usize, 1, 5, 16, 17, 40, 63]
        .iter()
        .enumerate()
        .map(|(i, &n)| Document {
            index: i,
            id: format!("d{i}"),
            tokens: (0..n).map(|_| lcg(&mut s)).collect(),
            counted: "a b".into(),
        })
        .collect();
    for batch in [1, 3, 64] {
        let mut finished = 0;
        let scores =
            score_documents(&model, &docs, prefix, max_len, batch, || finished += 1).unwrap();
        assert_eq!(finished, docs.len(), "batch {batch}");
        for (doc, got) in docs.iter().zip(&scores) {
            let windows = rolling_windows(&doc.tokens, prefix, max_len);
            assert_eq!(
                windows.iter().map(|w| w.predict).sum::<usize>(),
                doc.tokens.len(),
                "every token is predicted exactly once"
            );
            let naive: f64 = windows
                .iter()
                .map(|w| {
                    let lp = token_logprobs(&model, std::slice::from_ref(&w.tokens)).unwrap();
                    lp[0][lp[0].len() - w.predict..]
                        .iter()
                        .map(|&x| x as f64)
                        .sum::<f64>()
                })
                .sum();
            assert!(
                (got.loglik - naive).abs() < 1e-4,
                "batch {batch} doc {}: {} vs {naive}",
                doc.id,
                got.loglik
            );
            if !doc.tokens.is_empty() && doc.tokens.len() <= max_len {
                let mut seq = vec![prefix];
                seq.extend_from_slice(&doc.tokens);
                let one: f64 = token_logprobs(&model, &[seq]).unwrap()[0]
                    .iter()
                    .map(|&x| x as f64)
                    .sum();
                assert!((got.loglik - one).abs() < 1e-4, "doc {}", doc.id);
            }
            assert_eq!((got.tokens, got.bytes, got.words), (doc.tokens.len(), 3, 2));
        }
        assert_eq!(scores[0].loglik, 0.0, "an empty document predicts nothing");
    }
}
