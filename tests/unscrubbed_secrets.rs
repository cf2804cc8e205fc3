//! Without `crac::ScrubbingAlloc` as the global allocator (this test binary has none), a
//! checkpoint that wipes a `#[crac(secret)]` field is refused: freed copies of the secret
//! could be in the heap an image captures.

use std::sync::{Arc, Mutex};

use crac::{BoxError, Checkpointable, Error};

#[derive(Checkpointable)]
#[crac(name = "vault")]
struct Vault {
    #[crac(secret, reload = Self::load)]
    key: Mutex<String>,
}

impl Vault {
    fn load(&self) -> Result<String, BoxError> {
        Ok("reloaded".into())
    }
}

#[test]
fn a_secret_field_is_not_checkpointed_while_freed_memory_keeps_copies() {
    assert!(!crac::ScrubbingAlloc::is_global_allocator());
    crac::use_engine("simulate").unwrap();
    let vault = Arc::new(Vault {
        key: Mutex::new("the key".into()),
    });
    crac::register(&vault);

    let Err(Error::CheckpointRefused { failures }) = crac::checkpoint_restore() else {
        panic!("the checkpoint must be refused");
    };
    let text = failures.to_string();
    assert!(
        text.contains(
            "`vault.key` failed in before_checkpoint: freed copies of this #[crac(secret)] \
             field may remain in memory and reach the image: the program's global allocator \
             does not scrub freed memory; add `#[global_allocator] static ALLOC: \
             crac::ScrubbingAlloc = crac::ScrubbingAlloc::new(std::alloc::System);`"
        ),
        "{text}"
    );
    assert_eq!(*vault.key.lock().unwrap(), "reloaded", "rolled back");
}
