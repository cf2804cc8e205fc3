//! What a restored copy sends back to the test: values encoded as bytes in a file the
//! copy writes, decoded by the test process. A small format of its own, so that a test
//! needs no serialization crate: integers little-endian, lengths as `u64`, tuples and
//! arrays as their parts in order.

/// A value a restored copy of a `#[crac::test]` can return to the test.
///
/// Implemented for integers, `bool`, `char`, `String`, `()`, `Option`, `Vec`, arrays and
/// tuples of up to four values; implement it for a type of your own by encoding its
/// parts in order:
///
/// ```
/// use crac::testing::Value;
///
/// #[derive(Debug, PartialEq)]
/// struct Draw { copy: u32, number: u64 }
///
/// impl Value for Draw {
///     fn encode(&self, out: &mut Vec<u8>) {
///         (self.copy, self.number).encode(out);
///     }
///     fn decode(input: &mut &[u8]) -> Option<Self> {
///         let (copy, number) = Value::decode(input)?;
///         Some(Draw { copy, number })
///     }
/// }
///
/// let mut bytes = Vec::new();
/// Draw { copy: 2, number: 7 }.encode(&mut bytes);
/// assert_eq!(Draw::decode(&mut &bytes[..]), Some(Draw { copy: 2, number: 7 }));
/// ```
pub trait Value: Sized {
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Takes one value's bytes from the front of `input`; `None` if they are not one.
    fn decode(input: &mut &[u8]) -> Option<Self>;
}

/// The first `n` bytes of `input`, taken from it.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn length(input: &mut &[u8]) -> Option<usize> {
    usize::try_from(u64::decode(input)?).ok()
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(input: &mut &[u8]) -> Option<Self> {
                let bytes = take(input, size_of::<$t>())?;
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}
integers!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

/// `usize` and `isize` travel as 64 bits: the test and its copies are one executable.
macro_rules! sizes {
    ($($t:ty as $wire:ty),*) => {$(
        impl Value for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                (*self as $wire).encode(out);
            }
            fn decode(input: &mut &[u8]) -> Option<Self> {
                <$t>::try_from(<$wire>::decode(input)?).ok()
            }
        }
    )*};
}
sizes!(usize as u64, isize as i64);

impl Value for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        u8::from(*self).encode(out);
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        match u8::decode(input)? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl Value for char {
    fn encode(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode(out);
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        char::from_u32(u32::decode(input)?)
    }
}

impl Value for String {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).encode(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let n = length(input)?;
        String::from_utf8(take(input, n)?.to_vec()).ok()
    }
}

impl<T: Value> Value for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u64).encode(out);
        self.iter().for_each(|item| item.encode(out));
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let n = length(input)?;
        // Each item takes at least a byte, but () takes none: bound the reservation.
        let mut items = Vec::with_capacity(n.min(input.len()));
        for _ in 0..n {
            items.push(T::decode(input)?);
        }
        Some(items)
    }
}

impl<T: Value, const N: usize> Value for [T; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|item| item.encode(out));
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        let items = (0..N)
            .map(|_| T::decode(input))
            .collect::<Option<Vec<T>>>()?;
        items.try_into().ok()
    }
}

impl<T: Value> Value for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(value) = self {
            value.encode(out);
        }
    }
    fn decode(input: &mut &[u8]) -> Option<Self> {
        match bool::decode(input)? {
            true => Some(Some(T::decode(input)?)),
            false => Some(None),
        }
    }
}

macro_rules! tuples {
    ($(($($t:ident),*)),*) => {$(
        impl<$($t: Value),*> Value for ($($t,)*) {
            #[allow(non_snake_case, unused_variables)]
            fn encode(&self, out: &mut Vec<u8>) {
                let ($($t,)*) = self;
                $($t.encode(out);)*
            }
            #[allow(unused_variables)]
            fn decode(input: &mut &[u8]) -> Option<Self> {
                Some(($($t::decode(input)?,)*))
            }
        }
    )*};
}
tuples!((), (A), (A, B), (A, B, C), (A, B, C, D));

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Value + PartialEq + std::fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let mut input = &bytes[..];
        assert_eq!(T::decode(&mut input), Some(value));
        assert!(input.is_empty(), "bytes left over");
    }

    #[test]
    fn every_kind_comes_back_as_it_went() {
        round_trip(u128::MAX);
        round_trip(-5i8);
        round_trip(usize::MAX);
        round_trip(true);
        round_trip('é');
        round_trip(String::from("copy 2"));
        round_trip(vec![Some(1u64), None, Some(3)]);
        round_trip([(1u8, String::from("a")), (2, String::from("bc"))]);
        round_trip(((), 7u32, vec![vec![1i64]], Some('x')));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused_not_misread() {
        let mut bytes = Vec::new();
        String::from("restored").encode(&mut bytes);
        assert_eq!(String::decode(&mut &bytes[..bytes.len() - 1]), None);
        assert_eq!(bool::decode(&mut &[2u8][..]), None);
        assert_eq!(char::decode(&mut &0xD800u32.to_le_bytes()[..]), None);
        assert_eq!(Vec::<u64>::decode(&mut &u64::MAX.to_le_bytes()[..]), None);
    }
}
