//! The streaming client's own cost: it runs on the metered machine, so its CPU time per streamed
//! chunk is part of what machine-level meters see. Parses an in-memory SSE stream of 1,000
//! chat chunks (with a usage event and [DONE]) and reports the time per chunk.

use criterion::Criterion;
use joulebench::engine::external::openai::read_stream;

fn stream(chunks: usize) -> String {
    let mut s = String::new();
    for i in 0..chunks {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\
             \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str(
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":128,\"completion_tokens\":1000}}\n\n",
    );
    s.push_str("data: [DONE]\n\n");
    s
}

fn main() {
    let text = stream(1000);
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("sse_parse_1000_chunks", |b| {
        b.iter(|| {
            let now = joulebench::clock::monotonic_ns;
            let o = read_stream(text.as_bytes(), 0, &now, &mut |_, _| {}).expect("valid stream");
            assert_eq!(o.chunks.len(), 1000);
            o
        })
    });
    c.final_summary();
}
