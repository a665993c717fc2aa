//! Interned strings of the recommendation index: item ids, model versions and surfaces
//! repeat across millions of served lists with few distinct values, so each distinct
//! string is stored once and the lists hold its 4-byte [`Sym`].
//!
//! Strings are never taken out one by one (the index would need a count per string);
//! the whole interner is dropped when the index is rebuilt from the table.

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;

use hashbrown::HashTable;

/// One interned string: its position in the interner, plus one (so that `Option<Sym>`
/// is 4 bytes too). At most [`Sym::MAX`], which leaves [`super::user::Item`] two spare
/// bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Sym(NonZeroU32);

impl Sym {
    /// The largest symbol (2³⁰ − 1).
    pub(super) const MAX: u32 = (1 << 30) - 1;

    /// The symbol with raw value `raw` (1 ..= [`Sym::MAX`]).
    pub(super) fn from_raw(raw: u32) -> Option<Sym> {
        NonZeroU32::new(raw)
            .filter(|r| r.get() <= Sym::MAX)
            .map(Sym)
    }

    /// The raw value, 1 ..= [`Sym::MAX`].
    pub(super) fn raw(self) -> u32 {
        self.0.get()
    }

    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// The interner is full: [`Sym::MAX`] distinct strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "more than {} distinct item ids, model versions and surfaces",
    Sym::MAX
)]
pub(super) struct InternerFull;

/// Distinct strings and their symbols.
#[derive(Debug, Default)]
pub(super) struct Interner {
    strings: Vec<Box<str>>,
    /// Positions in `strings`, found by the string's hash.
    ids: HashTable<u32>,
    hasher: RandomState,
    /// Bytes of all strings together.
    text_bytes: usize,
}

impl Interner {
    /// The symbol of `text`, when it is interned.
    pub(super) fn get(&self, text: &str) -> Option<Sym> {
        let hash = self.hasher.hash_one(text);
        self.ids
            .find(hash, |&i| &*self.strings[i as usize] == text)
            .and_then(|&i| Sym::from_raw(i + 1))
    }

    /// The symbol of `text`, interning it when new.
    pub(super) fn intern(&mut self, text: &str) -> Result<Sym, InternerFull> {
        let hash = self.hasher.hash_one(text);
        let Interner {
            strings,
            ids,
            hasher,
            text_bytes,
        } = self;
        let entry = ids.entry(
            hash,
            |&i| &*strings[i as usize] == text,
            |&i| hasher.hash_one(&*strings[i as usize]),
        );
        let index = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                let index = u32::try_from(strings.len())
                    .ok()
                    .filter(|&i| i < Sym::MAX)
                    .ok_or(InternerFull)?;
                strings.push(text.into());
                *text_bytes += text.len();
                v.insert(index);
                index
            }
        };
        Sym::from_raw(index + 1).ok_or(InternerFull)
    }

    /// The string of `sym` (empty for a symbol of another interner, which the index
    /// never hands out).
    pub(super) fn resolve(&self, sym: Sym) -> &str {
        self.strings.get(sym.index()).map_or("", |s| s)
    }

    /// Distinct strings interned.
    pub(super) fn len(&self) -> usize {
        self.strings.len()
    }

    /// Estimated bytes held: the strings, their boxes and the table.
    pub(super) fn bytes(&self) -> usize {
        self.text_bytes
            + self.strings.capacity() * std::mem::size_of::<Box<str>>()
            + self.ids.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_string_gets_the_same_symbol() {
        let mut interner = Interner::default();
        let a = interner.intern("item-1").unwrap();
        let b = interner.intern("item-2").unwrap();
        assert_ne!(a, b);
        assert_eq!(interner.intern("item-1").unwrap(), a);
        assert_eq!(interner.get("item-2"), Some(b));
        assert_eq!(interner.get("item-3"), None);
        assert_eq!(interner.len(), 2);
        assert_eq!(interner.resolve(a), "item-1");
        assert_eq!(interner.resolve(b), "item-2");
        assert!(interner.bytes() >= "item-1item-2".len());
    }

    #[test]
    fn symbols_stay_within_their_bits() {
        assert_eq!(Sym::from_raw(0), None);
        assert_eq!(Sym::from_raw(Sym::MAX).map(Sym::raw), Some(Sym::MAX));
        assert_eq!(Sym::from_raw(Sym::MAX + 1), None);
    }
}
