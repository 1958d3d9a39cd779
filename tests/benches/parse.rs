#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

//! Parse benchmark: a generated 10,000-instruction Dockerfile (every
//! instruction kind, continuations, heredocs, flags) through the whole front
//! end (`kiln::dockerfile::parse`: syntax tree and typed instructions).
//! Goal (issue #2): well under 50 ms. Run with `cargo bench --bench parse`.

use std::hint::black_box;
use std::time::Instant;

fn big_dockerfile(instructions: usize) -> String {
    let mut out = String::from(
        "# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\nFROM ${BASE} AS stage0\n",
    );
    let mut n = 2;
    let mut stage = 0;
    while n < instructions {
        let line = match n % 20 {
            0 => {
                stage += 1;
                format!("FROM ${{BASE}} AS stage{stage}\n")
            }
            1 => "ARG VERSION=1.2.3 OTHER\n".to_string(),
            2 => "ENV PATH=/opt/bin:$PATH LANG=C.UTF-8 \\\n    HOME=/root\n".to_string(),
            3 => "LABEL org.opencontainers.image.title=\"kiln bench\" version=${VERSION}\n".to_string(),
            4 => "WORKDIR /src/app\n".to_string(),
            5 => "COPY --chown=1000:1000 --chmod=644 go.mod go.sum ./\n".to_string(),
            6 => "RUN --mount=type=cache,target=/root/.cache,id=gocache \\\n    apt-get update && \\\n    # a comment inside\n    apt-get install -y curl\n".to_string(),
            7 => "RUN <<EOF\nset -e\necho one\necho two\nEOF\n".to_string(),
            8 => "COPY <<-EOT /etc/app.conf\n\tkey=value\n\tEOT\n".to_string(),
            9 => "ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.com/a.tar.gz /opt/\n".to_string(),
            10 => "EXPOSE 8080/tcp 9000-9002/udp\n".to_string(),
            11 => "VOLUME [\"/data\", \"/logs\"]\n".to_string(),
            12 => "USER app:app\n".to_string(),
            13 => "HEALTHCHECK --interval=5s --timeout=3s CMD curl -f http://localhost/ || exit 1\n".to_string(),
            14 => "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n".to_string(),
            15 => "STOPSIGNAL SIGTERM\n".to_string(),
            16 => "ONBUILD RUN echo triggered\n".to_string(),
            17 => "ENTRYPOINT [\"/usr/bin/app\", \"--serve\"]\n".to_string(),
            18 => "CMD [\"--verbose\"]\n".to_string(),
            _ => format!("COPY --from=stage{} /src/app /opt/app{n}\n", stage.max(1)),
        };
        out.push_str(&line);
        n += 1;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Test harnesses list targets with `--list`: this one has no tests.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let text = big_dockerfile(10_000);
    let parsed = kiln::dockerfile::parse(text.as_bytes()).expect("the benchmark file parses");
    let count = parsed.instructions.len();
    let lines = text.lines().count();

    // Warm up, then take the median of 31 runs.
    for _ in 0..3 {
        black_box(kiln::dockerfile::parse(black_box(text.as_bytes())).unwrap());
    }
    let mut times: Vec<f64> = (0..31)
        .map(|_| {
            let start = Instant::now();
            black_box(kiln::dockerfile::parse(black_box(text.as_bytes())).unwrap());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "parse: {count} instructions, {lines} lines, {} KiB: median {:.2} ms, min {:.2} ms, max {:.2} ms (goal: well under 50 ms)",
        text.len() / 1024,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
