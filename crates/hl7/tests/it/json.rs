use hl7::Message;

use crate::fixtures::{ADT_A01, cr};

#[test]
fn the_json_tree_nests_only_values_that_have_parts() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let tree = message.to_json_tree();
    assert_eq!(tree["delimiters"], "|^~\\&");
    assert_eq!(tree["charset"], "UNICODE UTF-8");
    assert_eq!(tree["segments"][0]["fields"]["1"], "|");
    assert_eq!(tree["segments"][0]["fields"]["2"], "^~\\&");
    let pid = &tree["segments"][2];
    assert_eq!(pid["id"], "PID");
    assert_eq!(pid["fields"]["8"], "F");
    assert!(pid["fields"].get("2").is_none());
    assert_eq!(pid["fields"]["3"][1][3][0], "USSSA");
    assert_eq!(pid["fields"]["5"][0][0], "O'BRIEN");
    // Escapes are decoded.
    assert_eq!(
        tree["segments"][7]["fields"]["3"],
        "Prefers quiet room & morning visits"
    );
}
