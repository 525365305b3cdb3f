//! [`S3Remote`]: the [`RemoteCache`] on an S3 bucket (or any S3-compatible server),
//! through the `object_store` crate. Owns the client, the key layout under the prefix
//! and a small tokio runtime that runs the concurrent transfers; the push and pull
//! protocols live in [`crate::push`] and [`crate::pull`].

use std::str::FromStr;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use slayer_cache::{ContentHash, RemoteCache, RemoteError, RunRecord, Store, Transfer};

use crate::error::S3Error;

/// Tuning of transfers. The defaults suit real S3; tests use small parts.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Objects transferred at the same time.
    pub concurrency: usize,
    /// Files above this size are uploaded in parts (multipart upload), streamed from disk.
    pub multipart_threshold: u64,
    /// Size of one part (S3 wants at least 5 MiB for every part but the last). Raised
    /// for files that would need more than 10,000 parts.
    pub part_size: usize,
    /// Parts of one file in flight at the same time.
    pub parts_in_flight: usize,
}

impl Default for S3Options {
    fn default() -> S3Options {
        S3Options {
            concurrency: 8,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            parts_in_flight: 2,
        }
    }
}

/// A remote cache in `s3://BUCKET/PREFIX` (layout in the crate docs).
///
/// Memory is bounded by the options, not by file sizes: at most `concurrency` files move
/// at once, each holding at most `multipart_threshold` bytes (a small file) or
/// `(parts_in_flight + 1) × part_size` bytes (a large one) in memory.
///
/// Its methods block on its own runtime: call them from ordinary threads, not from
/// inside an async runtime.
pub struct S3Remote {
    url: String,
    bucket: String,
    prefix: String,
    pub(crate) client: Arc<dyn ObjectStore>,
    pub(crate) options: S3Options,
    pub(crate) runtime: tokio::runtime::Runtime,
}

/// Splits `s3://bucket/prefix/` into (`bucket`, `prefix`).
fn parse_url(url: &str) -> Result<(String, String), S3Error> {
    let invalid = |problem: &str| S3Error::InvalidUrl {
        url: url.to_string(),
        problem: problem.to_string(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| invalid("expected s3://BUCKET or s3://BUCKET/PREFIX"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
    if !bucket_ok {
        return Err(invalid(
            "the bucket name must be 3 to 63 lowercase letters, digits, `-` or `.`",
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|part| part.is_empty() && !prefix.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("the prefix has an empty, `.` or `..` component"));
    }
    Key::parse(prefix).map_err(|e| invalid(&e.to_string()))?;
    Ok((bucket.to_string(), prefix.to_string()))
}

impl S3Remote {
    /// The remote at `url` (`s3://BUCKET[/PREFIX]`), with endpoint, credentials and region
    /// from the environment as the AWS CLI reads them: `AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
    /// (else `AWS_DEFAULT_REGION`), and `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint.
    pub fn from_url(url: &str) -> Result<S3Remote, S3Error> {
        S3Remote::from_url_with(url, &[], S3Options::default())
    }

    /// [`S3Remote::from_url`] with `config` (pairs named like the environment variables,
    /// e.g. `("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")`) overriding the environment,
    /// and explicit transfer options.
    pub fn from_url_with(
        url: &str,
        config: &[(String, String)],
        options: S3Options,
    ) -> Result<S3Remote, S3Error> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = AmazonS3Builder::from_env();
        // The AWS CLI falls back to AWS_DEFAULT_REGION; object_store reads only AWS_REGION.
        let has_region = std::env::var_os("AWS_REGION").is_some()
            || config.iter().any(|(k, _)| k == "AWS_REGION");
        let default_region = config
            .iter()
            .find(|(k, _)| k == "AWS_DEFAULT_REGION")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        if let (false, Some(region)) = (has_region, default_region) {
            builder = builder.with_config(AmazonS3ConfigKey::Region, region);
        }
        for (name, value) in config {
            match AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase()) {
                Ok(key) => builder = builder.with_config(key, value),
                Err(_) if name == "AWS_DEFAULT_REGION" => {}
                Err(e) => {
                    return Err(S3Error::InvalidUrl {
                        url: url.to_string(),
                        problem: format!("unknown S3 setting `{name}`: {e}"),
                    });
                }
            }
        }
        let client = builder
            .with_bucket_name(&bucket)
            .build()
            .map_err(|source| S3Error::Config {
                url: url.to_string(),
                source,
            })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.concurrency.clamp(1, 4))
            .thread_name("slayer-s3")
            .enable_all()
            .build()
            .map_err(S3Error::Runtime)?;
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(S3Remote {
            url,
            bucket,
            prefix,
            client: Arc::new(client),
            options: S3Options {
                concurrency: options.concurrency.max(1),
                parts_in_flight: options.parts_in_flight.max(1),
                part_size: options.part_size.max(1),
                ..options
            },
            runtime,
        })
    }

    /// The URL, normalised (`s3://bucket/prefix`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client, for tests and tools that inspect the bucket.
    pub fn client(&self) -> Arc<dyn ObjectStore> {
        self.client.clone()
    }

    fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Key of the object holding the content with this hash: `PREFIX/objects/<hash>`.
    pub fn object_key(&self, hash: &ContentHash) -> Key {
        self.key(&format!("objects/{hash}"))
    }

    /// Key of the record of a fingerprint: `PREFIX/runs/<fp>.json`.
    pub fn record_key(&self, fingerprint: &str) -> Key {
        self.key(&format!("runs/{fingerprint}.json"))
    }

    /// A key as a URL for messages: `s3://bucket/prefix/objects/…`.
    pub(crate) fn show(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// Whether the remote has the record of `fingerprint`.
    pub fn has_record(&self, fingerprint: &str) -> Result<bool, S3Error> {
        let key = self.record_key(fingerprint);
        match self.runtime.block_on(self.client.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(S3Error::Request {
                op: "check",
                key: self.show(&key),
                source,
            }),
        }
    }
}

impl RemoteCache for S3Remote {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn contains(&self, fingerprint: &str) -> Result<bool, RemoteError> {
        Ok(self.has_record(fingerprint)?)
    }

    fn push(&self, store: &Store, record: &RunRecord) -> Result<(), RemoteError> {
        self.push_result(store, record)?;
        Ok(())
    }

    fn pull(&self, store: &Store, fingerprint: &str) -> Result<Option<RunRecord>, RemoteError> {
        Ok(self.pull_result(store, fingerprint)?.map(|(r, _)| r))
    }

    fn push_counted(&self, store: &Store, record: &RunRecord) -> Result<Transfer, RemoteError> {
        Ok(self.push_result(store, record)?)
    }

    fn pull_counted(
        &self,
        store: &Store,
        fingerprint: &str,
    ) -> Result<Option<(RunRecord, Transfer)>, RemoteError> {
        Ok(self.pull_result(store, fingerprint)?)
    }

    fn pull_record_only(
        &self,
        store: &Store,
        fingerprint: &str,
    ) -> Result<Option<RunRecord>, RemoteError> {
        Ok(self.pull_metrics_only(store, fingerprint)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let ok = |u: &str| parse_url(u).ok();
        assert_eq!(
            ok("s3://my-bucket"),
            Some(("my-bucket".into(), String::new()))
        );
        assert_eq!(
            ok("s3://my-bucket/"),
            Some(("my-bucket".into(), String::new()))
        );
        assert_eq!(
            ok("s3://b.c1/team/cache/"),
            Some(("b.c1".into(), "team/cache".into()))
        );
        for bad in [
            "my-bucket",
            "http://x/y",
            "s3://",
            "s3://ab",
            "s3://Bucket/x",
            "s3://bkt/a//b",
            "s3://bkt/../x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
