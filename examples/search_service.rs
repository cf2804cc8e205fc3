//! A search service whose warm-up is honestly expensive: it generates a text corpus and
//! builds an inverted index over it (tokenizing 40 words per document), then answers
//! queries over TCP, one line each: `search <word>`, `checksum` (walks the whole index:
//! every posting list, every document and its text), `touch-pages <n>` (reads `n`
//! documents spread evenly over the index, each on pages of its own: a request that
//! touches a little of the state everywhere), `change <percent>` (rewrites that share of
//! the documents in place, the first ones: their words and text reversed), `checkpoint`
//! (checkpoints the service again, to `CRAC_CHECKPOINT_TO`, e.g. given to a restored copy
//! with `crac restore --env`) and `quit`.
//!
//! `search_service [ADDR] [OPTIONS]` starts cold; `SEARCH_DOCS` sets the corpus size
//! (default 300 000 documents, a 268 MB image). With `CRAC_CHECKPOINT_TO` set it
//! checkpoints itself once warm, and a restored copy answers at once. The listener is a
//! resource: closed before the checkpoint, bound again after the restore (the CRaC way).
//!
//! Its heap is a [`crac::MappedHeap`]: in the process started for the checkpoint the index
//! lives in segment files that a restore maps instead of copying (`CRAC_MAPPED_HEAP=off`
//! keeps the system allocator, and the index is dumped as pages).
//!
//! The alternatives a Rust user would write by hand, for comparison:
//! - `--save-bincode FILE` / `--load-bincode FILE`: the index serialized with serde and
//!   bincode after the cold build, and deserialized at start instead of built;
//! - `--save-rkyv FILE` / `--load-rkyv FILE`: an rkyv archive of the index, mapped into
//!   memory at start and queried in place, without deserializing.
//!
//! `examples/restore_bench.rs` drives it and measures all of them.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crac::{BoxError, Checkpoint, Checkpointable, Restore};

/// Counts live heap bytes, to compare the image with what the program really holds.
struct Counting(crac::MappedHeap);
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the inner allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above: `ptr` came from this allocator with `layout`.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above; the inner allocator grows in place where it can.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting(crac::MappedHeap::new());

/// Documents indexed when `SEARCH_DOCS` is not set.
const DEFAULT_DOCS: u32 = 300_000;
const WORDS_PER_DOC: u32 = 40;
const VOCABULARY: u32 = 200_000;

/// The inverted index: word → ids of the documents containing it.
#[derive(serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize)]
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
    fn build(docs: u32) -> Index {
        let mut index = Index {
            vocabulary: HashMap::new(),
            postings: Vec::new(),
            documents: Vec::with_capacity(docs as usize),
            texts: Vec::with_capacity(docs as usize),
        };
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut text = String::new();
        for doc in 0..docs {
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
}

/// What the server needs from an index, owned ([`Index`]) or archived in place
/// ([`ArchivedIndex`]): both answer every command byte for byte alike.
trait Corpus {
    /// The term id of `word`, if the corpus has it.
    fn term(&self, word: &str) -> Option<u32>;
    /// How many documents contain `term`, and the first of them.
    fn hits(&self, term: u32) -> (usize, u32);
    /// A document's text and its number of words.
    fn document(&self, doc: u32) -> (&str, usize);
    /// The checksum of the whole index (see [`Digest`]).
    fn checksum(&self) -> u64;
    /// How many documents there are, and a document's term ids in order.
    fn documents(&self) -> usize;
    fn terms(&self, doc: u32) -> impl Iterator<Item = u32>;
    /// Rewrites the first `percent` of the documents in place; how many it rewrote, or
    /// `None` for a read-only corpus.
    fn change(&mut self, _percent: u32) -> Option<usize> {
        None
    }

    /// Reads `pages` documents spread evenly over the corpus (their words and text:
    /// each on pages of its own while documents are far more than `pages`) and returns
    /// their checksum.
    fn touch_pages(&self, pages: usize) -> u64 {
        let docs = self.documents();
        let mut digest = Digest(Digest::SEED);
        for i in 0..pages.min(docs) {
            let doc = (i * docs / pages.min(docs)) as u32;
            digest.bytes(self.document(doc).0.as_bytes());
            for term in self.terms(doc) {
                digest.word(term.into());
            }
        }
        digest.0
    }

    fn search(&self, query: &str) -> String {
        match self.term(query) {
            None => "0\n".to_string(),
            Some(term) => {
                let (count, first) = self.hits(term);
                let (text, words) = self.document(first);
                let snippet: String = text.chars().take(40).collect();
                format!("{count} documents; first: #{first} ({words} words) \"{snippet}...\"\n")
            }
        }
    }
}

/// A 64-bit digest that reads every value it is given: cheap enough to walk a gigabyte
/// in a fraction of a second, and sensitive to any changed, lost or reordered value.
struct Digest(u64);

impl Digest {
    const SEED: u64 = 0xcbf2_9ce4_8422_2325;

    fn word(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x5132_2d67_c0f1_a3b9);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().unwrap()));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56);
    }

    /// Walks the index in a fixed order; the vocabulary, whose order depends on its
    /// hasher, is summed entry by entry so that its order does not matter.
    fn of_index<'a, P, D>(
        vocabulary: impl Iterator<Item = (&'a str, u32)>,
        postings: impl Iterator<Item = P>,
        documents: impl Iterator<Item = D>,
        texts: impl Iterator<Item = &'a str>,
    ) -> u64
    where
        P: Iterator<Item = u32>,
        D: Iterator<Item = u32>,
    {
        let mut words = 0u64;
        for (word, term) in vocabulary {
            let mut entry = Digest(Self::SEED);
            entry.bytes(word.as_bytes());
            entry.word(term.into());
            words = words.wrapping_add(entry.0);
        }
        let mut digest = Digest(words);
        for list in postings {
            for doc in list {
                digest.word(doc.into());
            }
            digest.word(u64::MAX);
        }
        for terms in documents {
            for term in terms {
                digest.word(term.into());
            }
            digest.word(u64::MAX);
        }
        for text in texts {
            digest.bytes(text.as_bytes());
        }
        digest.0
    }
}

impl Corpus for Index {
    fn term(&self, word: &str) -> Option<u32> {
        self.vocabulary.get(word).copied()
    }
    fn hits(&self, term: u32) -> (usize, u32) {
        let docs = &self.postings[term as usize];
        (docs.len(), docs[0])
    }
    fn document(&self, doc: u32) -> (&str, usize) {
        (
            &self.texts[doc as usize],
            self.documents[doc as usize].len(),
        )
    }
    fn documents(&self) -> usize {
        self.documents.len()
    }
    fn terms(&self, doc: u32) -> impl Iterator<Item = u32> {
        self.documents[doc as usize].iter().copied()
    }
    /// Reverses each changed document's words and text (the text stays ASCII), so that
    /// its pages are written and the checksum changes; the postings stay valid.
    fn change(&mut self, percent: u32) -> Option<usize> {
        let count = self.documents.len() * percent.min(100) as usize / 100;
        for doc in 0..count {
            self.documents[doc].reverse();
            let text = &mut self.texts[doc];
            // SAFETY: the texts are ASCII (`push_word`), so reversed they are valid UTF-8.
            unsafe { text.as_bytes_mut() }.reverse();
        }
        Some(count)
    }
    fn checksum(&self) -> u64 {
        Digest::of_index(
            self.vocabulary.iter().map(|(w, &t)| (w.as_str(), t)),
            self.postings.iter().map(|l| l.iter().copied()),
            self.documents.iter().map(|d| d.iter().copied()),
            self.texts.iter().map(|t| &**t),
        )
    }
}

impl Corpus for &ArchivedIndex {
    fn term(&self, word: &str) -> Option<u32> {
        self.vocabulary.get(word).map(|t| t.to_native())
    }
    fn hits(&self, term: u32) -> (usize, u32) {
        let docs = &self.postings[term as usize];
        (docs.len(), docs[0].to_native())
    }
    fn document(&self, doc: u32) -> (&str, usize) {
        (
            &self.texts[doc as usize],
            self.documents[doc as usize].len(),
        )
    }
    fn documents(&self) -> usize {
        self.documents.len()
    }
    fn terms(&self, doc: u32) -> impl Iterator<Item = u32> {
        self.documents[doc as usize].iter().map(|t| t.to_native())
    }
    fn checksum(&self) -> u64 {
        Digest::of_index(
            self.vocabulary
                .iter()
                .map(|(w, t)| (w.as_str(), t.to_native())),
            self.postings
                .iter()
                .map(|l| l.iter().map(|d| d.to_native())),
            self.documents
                .iter()
                .map(|d| d.iter().map(|t| t.to_native())),
            self.texts.iter().map(|t| &**t),
        )
    }
}

/// Writes the index as bincode (serde), the usual hand-written cache of a warm state.
fn save_bincode(index: &Index, path: &Path) -> Result<(), BoxError> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    bincode::serde::encode_into_std_write(index, &mut file, bincode::config::standard())?;
    file.into_inner()?.sync_all()?;
    Ok(())
}

/// Deserializes the index from the file as it is read: every structure is allocated
/// and filled again (streamed, so that eight loads at once do not hold the file twice).
fn load_bincode(path: &Path) -> Result<Index, BoxError> {
    let mut file = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    Ok(bincode::serde::decode_from_std_read(
        &mut file,
        bincode::config::standard(),
    )?)
}

/// Writes the index as an rkyv archive, laid out to be used where it lies.
fn save_rkyv(index: &Index, path: &Path) -> Result<(), BoxError> {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(index)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Maps the archive read-only, shared with the page cache (so copies of the service
/// share its memory), and returns its root: nothing is read until a query touches it.
fn map_rkyv(path: &Path) -> Result<&'static ArchivedIndex, BoxError> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len() as usize;
    // SAFETY: a fresh read-only mapping of a file we opened; no Rust object aliases
    // the range the kernel chooses.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: the mapping is `len` readable bytes and is never unmapped (the service
    // uses it until it exits), so the slice is valid for 'static.
    let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(ptr.cast(), len) };
    // SAFETY: the archive was written by `save_rkyv` of this same program and is
    // trusted as such (nobody changes it while it is mapped): validating it (`rkyv::access`) would read all of it at start,
    // which is what a zero-copy load avoids. The mapping is page-aligned, more than
    // the archive's alignment needs.
    Ok(unsafe { rkyv::access_unchecked::<ArchivedIndex>(bytes) })
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
        // the only hook: once it is done, the rest of the checkpoint is crac's and CRIU's
        eprintln!("search_service: hooks-done-ns {}", now_ns());
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

/// The command line: the address, then options with a file each.
#[derive(Default)]
struct Options {
    addr: Option<String>,
    save_bincode: Option<String>,
    load_bincode: Option<String>,
    save_rkyv: Option<String>,
    load_rkyv: Option<String>,
}

impl Options {
    fn parse() -> Result<Options, BoxError> {
        let mut options = Options::default();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let slot = match arg.as_str() {
                "--save-bincode" => &mut options.save_bincode,
                "--load-bincode" => &mut options.load_bincode,
                "--save-rkyv" => &mut options.save_rkyv,
                "--load-rkyv" => &mut options.load_rkyv,
                _ if !arg.starts_with('-') && options.addr.is_none() => {
                    options.addr = Some(arg);
                    continue;
                }
                _ => return Err(format!("unknown argument {arg}").into()),
            };
            *slot = Some(args.next().ok_or(format!("{arg} needs a file"))?);
        }
        Ok(options)
    }
}

fn main() -> Result<(), BoxError> {
    let options = Options::parse()?;
    let addr = options.addr.unwrap_or_else(|| "127.0.0.1:7878".into());
    let listener = Arc::new(Listener {
        socket: Mutex::new(Some(TcpListener::bind(&addr)?)),
        addr,
    });
    crac::register(&listener);

    let started = Instant::now();
    if let Some(path) = &options.load_rkyv {
        let mut index = map_rkyv(Path::new(path))?;
        eprintln!(
            "search_service: mapped {path} in {:.3} s",
            started.elapsed().as_secs_f64()
        );
        return match serve(&listener, &mut index)? {
            Served::Quit => Ok(()),
            Served::Checkpoint => Err("an rkyv-mapped service takes no checkpoint".into()),
        };
    }
    let mut index = match &options.load_bincode {
        Some(path) => {
            let index = load_bincode(Path::new(path))?;
            eprintln!(
                "search_service: loaded {path} in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            index
        }
        None => {
            let docs = match std::env::var("SEARCH_DOCS") {
                Ok(n) => n.parse().map_err(|e| format!("SEARCH_DOCS={n}: {e}"))?,
                Err(_) => DEFAULT_DOCS,
            };
            let index = Index::build(docs);
            let took = started.elapsed().as_secs_f64();
            eprintln!(
                "search_service: indexed {docs} documents, {} words, in {took:.2} s; live heap {} MB",
                index.vocabulary.len(),
                LIVE.load(Ordering::Relaxed) >> 20
            );
            eprintln!("search_service: indexing-ns {}", (took * 1e9) as u64);
            index
        }
    };
    if let Some(path) = &options.save_bincode {
        save_bincode(&index, Path::new(path))?;
    }
    if let Some(path) = &options.save_rkyv {
        save_rkyv(&index, Path::new(path))?;
    }

    if std::env::var_os("CRAC_CHECKPOINT_TO").is_some() {
        checkpoint()?;
    }
    while let Served::Checkpoint = serve(&listener, &mut index)? {
        checkpoint()?;
    }
    Ok(())
}

/// Checkpoints the service (to `CRAC_CHECKPOINT_TO`), reporting what its heap holds.
fn checkpoint() -> Result<(), BoxError> {
    eprintln!(
        "search_service: live-heap-bytes {}",
        LIVE.load(Ordering::Relaxed)
    );
    // what malloc holds for those bytes: chunk headers and rounding included (with the
    // mapped heap on, only what stays with the system allocator)
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
    Ok(())
}

/// Why [`serve`] returned.
enum Served {
    Quit,
    /// Told to checkpoint: the listener is back in its resource, closed by its hook.
    Checkpoint,
}

/// Answers one connection at a time, line by line, until told to quit or checkpoint.
fn serve(listener: &Listener, index: &mut impl Corpus) -> Result<Served, BoxError> {
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
            let command = line.trim();
            let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
            match verb {
                "search" => out.write_all(index.search(arg).as_bytes())?,
                "checksum" => {
                    out.write_all(format!("checksum {:016x}\n", index.checksum()).as_bytes())?
                }
                "touch-pages" => match arg.parse() {
                    Ok(pages) => out.write_all(
                        format!("touched {pages} {:016x}\n", index.touch_pages(pages)).as_bytes(),
                    )?,
                    Err(_) => out.write_all(b"touch-pages needs a number of pages\n")?,
                },
                "change" => match arg.parse().ok().map(|percent| index.change(percent)) {
                    Some(Some(count)) => {
                        out.write_all(format!("changed {count} documents\n").as_bytes())?
                    }
                    Some(None) => out.write_all(b"this index is read-only\n")?,
                    None => out.write_all(b"change needs a percentage\n")?,
                },
                "checkpoint" => {
                    // the connection closed first: the checkpoint carries no open socket
                    out.write_all(b"checkpointing\n")?;
                    drop((reader, out));
                    *listener.socket.lock().unwrap() = Some(socket);
                    return Ok(Served::Checkpoint);
                }
                "quit" => return Ok(Served::Quit),
                _ => out.write_all(b"unknown command\n")?,
            }
            line.clear();
        }
    }
    Ok(Served::Quit)
}
