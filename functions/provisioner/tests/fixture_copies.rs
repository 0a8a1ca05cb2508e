//! The local Lambda loop tests read their API Gateway and SQS fixtures from the consumer's
//! fixture directory; the API's and the provisioner's own are the reference. The copies must
//! not drift from them.

use std::{fs, path::Path};

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_consumer_directory_copies_equal_their_reference() {
    for (copy, reference) in [
        (
            "functions/consumer/tests/fixtures/apigw-v2-http-request.json",
            "functions/api/tests/fixtures/apigw-v2-http-request.json",
        ),
        (
            "functions/consumer/tests/fixtures/sqs-event.json",
            "functions/provisioner/tests/fixtures/sqs-event.json",
        ),
    ] {
        assert_eq!(
            read(copy),
            read(reference),
            "{copy} drifted from {reference}"
        );
    }
}
