//! Uniqueness checked at compile time: a field whose type is a well-known random
//! generator continues, in every restored copy, from the one state the image holds, so
//! all copies draw the same numbers. Such a field must say what it wants: `reseed`, or
//! `same_in_every_copy`.
//!
//! Recognised by name, as written: a type alias or a generator wrapped in a type of the
//! user's own is not seen (the check is a guard against the common mistake, not a proof).

use quote::ToTokens;
use syn::{GenericArgument, PathArguments, Type};

/// The generators recognised by their whole name.
const GENERATORS: &[&str] = &[
    // rand
    "StdRng",
    "SmallRng",
    "ThreadRng",
    // rand_chacha
    "ChaCha8Rng",
    "ChaCha12Rng",
    "ChaCha20Rng",
    // rand_isaac, rand_hc, rand_xorshift
    "IsaacRng",
    "Isaac64Rng",
    "Hc128Rng",
    "XorShiftRng",
];

/// Generators whose names a program's own types may well have too (a dice game's
/// `Rng`): recognised only written with their crate, as `fastrand::Rng`.
const QUALIFIED: &[(&str, &str)] = &[
    ("fastrand", "Rng"),
    ("oorandom", "Rand32"),
    ("oorandom", "Rand64"),
    ("nanorand", "WyRand"),
];

/// Generator families recognised by prefix, followed by their state size in bits:
/// rand_pcg's `Pcg32`, `Pcg64Mcg`, ...; rand_xoshiro's `Xoshiro256PlusPlus`,
/// `Xoroshiro128Plus`, ...
const FAMILIES: &[&str] = &["Pcg", "Xoshiro", "Xoroshiro", "SplitMix"];

/// What a generator is commonly held in; looked through to the generator.
const WRAPPERS: &[&str] = &[
    "Mutex", "RwLock", "RefCell", "Cell", "Option", "Arc", "Box", "Rc", "OnceLock", "OnceCell",
];

/// Whether `ty` is a random generator, possibly inside [`WRAPPERS`].
pub(crate) fn is_generator(ty: &Type) -> bool {
    let ty = match ty {
        Type::Group(group) => return is_generator(&group.elem),
        Type::Paren(paren) => return is_generator(&paren.elem),
        Type::Path(ty) if ty.qself.is_none() => ty,
        _ => return false,
    };
    let Some(last) = ty.path.segments.last() else {
        return false;
    };
    let name = last.ident.to_string();
    if WRAPPERS.contains(&name.as_str()) {
        return match &last.arguments {
            PathArguments::AngleBracketed(args) => args
                .args
                .iter()
                .any(|arg| matches!(arg, GenericArgument::Type(inner) if is_generator(inner))),
            _ => false,
        };
    }
    let krate = (ty.path.segments.len() > 1).then(|| ty.path.segments[0].ident.to_string());
    GENERATORS.contains(&name.as_str())
        || QUALIFIED
            .iter()
            .any(|&(c, n)| n == name && krate.as_deref() == Some(c))
        || FAMILIES.iter().any(|family| {
            name.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// The error for field `label` of type `ty`, a generator that says nothing of its copies.
pub(crate) fn message(label: &str, ty: &Type, skipped: bool) -> String {
    let written = ty
        .to_token_stream()
        .to_string()
        .replace(' ', "")
        .replace(',', ", ");
    let (unsaid, how) = if skipped {
        (
            ", and `skip` does not say that this is meant",
            "replace `skip` with",
        )
    } else {
        ("", "add")
    };
    format!(
        "field `{label}` is a random generator (`{written}`): every restored copy would \
         continue from the state in the image and draw the same numbers{unsaid}; {how} \
         `#[crac(reseed)]` to reseed it from OS entropy after each restore (a rand_core 0.10 \
         generator held in a `Mutex` or `RwLock`), `#[crac(with = module)]` whose \
         `after_restore` reseeds it (any other generator), or `#[crac(same_in_every_copy)]` \
         if the copies may share its sequence"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_found_through_their_wrappers() {
        for ty in [
            "StdRng",
            "rand::rngs::SmallRng",
            "std::sync::Mutex<SmallRng>",
            "Arc<RwLock<ChaCha20Rng>>",
            "Option<Box<fastrand::Rng>>",
            "RefCell<rand_pcg::Pcg64Mcg>",
            "Mutex<Xoshiro256PlusPlus>",
            "Cell<oorandom::Rand32>",
        ] {
            assert!(is_generator(&syn::parse_str(ty).unwrap()), "{ty}");
        }
    }

    #[test]
    fn other_types_are_not() {
        for ty in [
            "u64",
            "Mutex<String>",
            "Vec<StdRng>",
            "PcgConfig",
            "Arc<dyn Fn()>",
            "OsRng",
            "Mutex<Rng>",
            "game::Rng",
            "Rand32",
        ] {
            assert!(!is_generator(&syn::parse_str(ty).unwrap()), "{ty}");
        }
    }
}
