//! `crac inspect`: describing an image, in text and JSON, and whether it restores here.

use crate::harness::{Run, crac, killed_by_sigkill, set_len, setup, tests, text};
use crate::scenario::located;

tests![crac_inspect_describes_an_image_and_says_whether_it_restores_here];

fn crac_inspect_describes_an_image_and_says_whether_it_restores_here() {
    let (_, image) = setup("inspect");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let out = crac(&["inspect", image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let described = text(&out.stdout);
    let today = std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .unwrap();
    let today = text(&today.stdout);
    assert!(
        described.starts_with(&format!("created       {} ", today.trim()))
            && described.lines().next().unwrap().ends_with(" s ago)"),
        "a date and an age, not a Unix time: {described}"
    );
    let exe = std::env::current_exe().unwrap();
    assert!(
        described.contains(&format!("executable    {} (sha256 ", exe.display())),
        "{described}"
    );
    let (server, index) = (
        located("crac::register(&server);"),
        located("crac::register(&index);"),
    );
    assert!(
        described.contains(&format!(
            "plan          2 participants, in checkpoint order:\n  server ({server}) [rank 1, \
             resource]\n  index ({index}) [rank 0, resource]\n"
        )),
        "{described}"
    );
    assert!(
        described.ends_with("restorable    yes, on this host\n\n"),
        "{described}"
    );

    let json = text(&crac(&["inspect", "--json", image.to_str().unwrap()]).stdout);
    assert!(json.starts_with("{\"created_unix\":"), "{json}");
    assert!(
        json.contains(&format!(
            r#""plan":[{{"name":"server ({server})","rank":1,"kind":"resource","depth":0}},{{"name":"index ({index})","rank":0,"kind":"resource","depth":0}}]"#
        )),
        "{json}"
    );
    assert!(
        json.trim_end()
            .ends_with(r#""restorable":true,"refusal":null}"#),
        "{json}"
    );

    let pages = image.join("pages-1.img");
    let size = std::fs::metadata(&pages).unwrap().len();
    set_len(&pages, size - 1);
    let broken = crac(&["inspect", "--json", image.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stdout).contains(r#""restorable":false,"refusal":"cannot restore "#),
        "{broken:?}"
    );

    // `crac run` names the image once, then the problem
    let refused = crate::harness::crac_run(&exe, &image, "ready", &[]);
    assert_eq!(refused.status.code(), Some(70), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert_eq!(stderr.matches("cannot restore").count(), 1, "{stderr}");
    assert!(
        stderr.contains("the image was damaged or changed after the dump: image file pages-1.img"),
        "{stderr}"
    );

    // a directory that is not an image: "not restorable" (1), not crac's failure (70)
    let missing = crac(&["inspect", image.with_file_name("nothing").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        text(&missing.stderr).starts_with("crac: cannot restore "),
        "{missing:?}"
    );
}
