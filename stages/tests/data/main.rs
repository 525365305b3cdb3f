//! The data-stage tests, one test binary: `tokenizer.train` and `tokenize` (`tokenize`),
//! `pack`, `sft.format` and the corpus stages (`pack`), `corpus.synthetic` (`synthetic`).

mod support;

mod pack;
mod synthetic;
mod tokenize;
