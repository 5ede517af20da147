//! `haven classify`: one JSON line out per JSON line in, in order, with the contract fields.

mod common;

#[test]
fn classify_writes_one_line_per_input_in_order() {
    let input = concat!(
        "{\"text\": \"see you at practice\"}\n",
        "{\"text\": \"i want to k1ll myself tonight, i have the pills\"}\n",
        "{\"text\": \"my number is 07700 900123\"}\n",
    );
    let out = common::run(&["classify"], Some(input));
    assert!(out.status.success(), "{}", common::err(&out));
    let lines: Vec<serde_json::Value> = common::text(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["categories"], serde_json::json!([]));
    assert!(lines[0]["level"].is_null());
    assert_eq!(lines[1]["categories"][0]["category"], "Vulnerable person");
    assert_eq!(lines[1]["categories"][0]["level"], 5);
    assert!(lines[1]["categories"][0]["score"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[1]["level"], 5);
    assert!(lines[1]["spans"][0]["start"].is_u64());
    assert!(lines[1]["explanation"].as_str().unwrap().contains("k1ll myself"));
    assert_eq!(lines[2]["categories"][0]["category"], "Oversharer");
}

#[test]
fn bad_input_names_the_line() {
    let out = common::run(&["classify"], Some("{\"text\": \"ok\"}\nnot json\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(common::err(&out).contains("line 2"), "{}", common::err(&out));
}

#[test]
fn many_lines_keep_their_order_across_batches_and_cores() {
    // 5,000 lines (more than one batch), every third one a concern.
    let input: String = (0..5000)
        .map(|i| if i % 3 == 0 { format!("{{\"text\": \"line {i}: i want to kill myself\"}}\n") } else { format!("{{\"text\": \"line {i}: ok thanks\"}}\n") })
        .collect();
    let out = common::run(&["classify"], Some(&input));
    assert!(out.status.success(), "{}", common::err(&out));
    let lines: Vec<serde_json::Value> = common::text(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["level"].is_null(), i % 3 != 0, "line {i}: {l}");
    }
    // The lines before a bad one are still answered.
    let out = common::run(&["classify"], Some("{\"text\": \"i want to kill myself\"}\nnot json\n"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(common::text(&out).lines().count(), 1);
}
