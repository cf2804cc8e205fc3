//! A search service whose warm-up is honestly expensive: it generates a text corpus and
//! builds an inverted index over it (tokenizing 12 million words), then answers
//! `search <word>` queries over TCP, one line each.
//!
//! `search_service ADDR` starts cold. With `CRAC_CHECKPOINT_TO` set it checkpoints
//! itself once warm, and a restored copy answers at once. The listener is a resource:
//! closed before the checkpoint, bound again after the restore (the CRaC way).
//! `examples/restore_bench.rs` drives it and measures both.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crac::{BoxError, Checkpoint, Checkpointable, Restore};

/// Counts live heap bytes, to compare the image with what the program really holds.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DOCS: u32 = 300_000;
const WORDS_PER_DOC: u32 = 40;
const VOCABULARY: u32 = 200_000;

/// The inverted index: word → ids of the documents containing it.
struct Index {
    vocabulary: HashMap<String, u32>,
    postings: Vec<Vec<u32>>,
    /// Each document's words as term ids, and its text (to show snippets).
    documents: Vec<Box<[u32]>>,
    texts: Vec<Box<str>>,
}

/// Appends the word with id `id` to `text`: syllables of its base-16 digits.
fn push_word(text: &mut String, id: u32) {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "nu", "ra", "te", "vo", "si", "an", "el", "or", "ul", "be", "do", "fi",
        "gu",
    ];
    let mut n = id as usize;
    loop {
        text.push_str(SYLLABLES[n % 16]);
        n /= 16;
        if n == 0 {
            return;
        }
    }
}

impl Index {
    /// Generates each document as text, tokenizes it and indexes it, as a service
    /// loading its corpus would.
    fn build() -> Index {
        let mut index = Index {
            vocabulary: HashMap::new(),
            postings: Vec::new(),
            documents: Vec::with_capacity(DOCS as usize),
            texts: Vec::with_capacity(DOCS as usize),
        };
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut text = String::new();
        for doc in 0..DOCS {
            text.clear();
            for _ in 0..WORDS_PER_DOC {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // a Zipf-like skew: small ids are frequent
                let id = ((rng % VOCABULARY as u64) * (rng >> 40 & 0xff) / 255) as u32;
                push_word(&mut text, id);
                text.push(' ');
            }
            let mut terms: Vec<u32> = Vec::with_capacity(WORDS_PER_DOC as usize);
            for token in text.split_whitespace() {
                let term = match index.vocabulary.get(token) {
                    Some(&term) => term,
                    None => {
                        let term = index.vocabulary.len() as u32;
                        index.vocabulary.insert(token.to_string(), term);
                        index.postings.push(Vec::new());
                        term
                    }
                };
                let list = &mut index.postings[term as usize];
                if list.last() != Some(&doc) {
                    list.push(doc);
                }
                terms.push(term);
            }
            index.documents.push(terms.into_boxed_slice());
            index.texts.push(text.trim_end().into());
        }
        index
    }

    fn search(&self, query: &str) -> String {
        match self.vocabulary.get(query) {
            None => "0\n".to_string(),
            Some(&term) => {
                let docs = &self.postings[term as usize];
                let first = docs[0] as usize;
                let snippet: String = self.texts[first].chars().take(40).collect();
                format!(
                    "{} documents; first: #{first} ({} words) \"{snippet}...\"\n",
                    docs.len(),
                    self.documents[first].len()
                )
            }
        }
    }
}

/// The listening socket: not something an image should carry.
#[derive(Checkpointable)]
#[crac(name = "listener", before_checkpoint = Self::close, after_restore = Self::bind)]
struct Listener {
    addr: String,
    socket: Mutex<Option<TcpListener>>,
}

impl Listener {
    fn close(&self, _: &Checkpoint) -> Result<(), BoxError> {
        self.socket.lock().unwrap().take();
        Ok(())
    }
    /// Binds the address given at restore time (`crac restore --env SEARCH_ADDR=...`),
    /// so that many copies of one image can serve side by side, or the original one.
    fn bind(&self, _: &Restore) -> Result<(), BoxError> {
        let addr = std::env::var("SEARCH_ADDR").unwrap_or_else(|_| self.addr.clone());
        *self.socket.lock().unwrap() = Some(TcpListener::bind(&addr)?);
        Ok(())
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn main() -> Result<(), BoxError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let listener = Arc::new(Listener {
        socket: Mutex::new(Some(TcpListener::bind(&addr)?)),
        addr,
    });
    crac::register(&listener);

    let started = std::time::Instant::now();
    let index = Index::build();
    eprintln!(
        "search_service: indexed {DOCS} documents, {} words, in {:.2} s; live heap {} MB",
        index.vocabulary.len(),
        started.elapsed().as_secs_f64(),
        LIVE.load(Ordering::Relaxed) >> 20
    );

    if std::env::var_os("CRAC_CHECKPOINT_TO").is_some() {
        eprintln!(
            "search_service: live-heap-bytes {}",
            LIVE.load(Ordering::Relaxed)
        );
        // what malloc holds for those bytes: chunk headers and rounding included
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        eprintln!(
            "search_service: malloc-in-use-bytes {}",
            info.uordblks + info.hblkhd
        );
        eprintln!("search_service: checkpoint-start-ns {}", now_ns());
        let restore = crac::checkpoint_restore()?;
        eprintln!(
            "search_service: {:?} (generation {}) after {:?}",
            restore.outcome(),
            restore.generation,
            restore.checkpointed_for.unwrap_or_default()
        );
    }

    let socket = listener
        .socket
        .lock()
        .unwrap()
        .take()
        .ok_or("no listener")?;
    for stream in socket.incoming() {
        let stream = stream?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        let mut out: TcpStream = stream;
        while reader.read_line(&mut line)? > 0 {
            match line.trim().strip_prefix("search ") {
                Some(query) => out.write_all(index.search(query).as_bytes())?,
                None if line.trim() == "quit" => return Ok(()),
                None => out.write_all(b"unknown command\n")?,
            }
            line.clear();
        }
    }
    Ok(())
}
