//! One shard of the recommendation index's users: the users side by side in one vector,
//! found through a hash table of their positions.
//!
//! A hash table keeps between a half and an eighth of its slots empty. Holding whole
//! users in the slots (72 bytes each) made those empty slots about half of the index for
//! a million users; a position is 4 bytes. The vector grows by an eighth at a time, so
//! it too stays close to its length.

use hashbrown::HashTable;

use super::user::User;

/// Users of one shard.
#[derive(Debug, Default)]
pub(super) struct Shard {
    users: Vec<User>,
    /// Positions in `users`, found by the user id's hash.
    slots: HashTable<u32>,
}

impl Shard {
    /// The user `id`, whose hash is `hash`.
    pub(super) fn get(&self, hash: u64, id: &str) -> Option<&User> {
        let users = &self.users;
        self.slots
            .find(hash, |&at| {
                users.get(at as usize).is_some_and(|u| u.id() == id)
            })
            .and_then(|&at| users.get(at as usize))
    }

    /// Users held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }

    /// Estimated bytes of the vector and the table (not what each user points to).
    pub(super) fn bytes(&self) -> usize {
        self.users.capacity() * std::mem::size_of::<User>()
            + self.slots.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    /// Runs `change` on the user `id` (hash `hash`), created when new (`change` is told
    /// so), and removes the user when `change` leaves it empty. `hash_of` hashes a user
    /// id as `hash` was hashed (the table rehashes when it grows).
    pub(super) fn update<R>(
        &mut self,
        hash: u64,
        id: &str,
        hash_of: impl Fn(&str) -> u64,
        change: impl FnOnce(&mut User, bool) -> R,
    ) -> R {
        let Shard { users, slots } = self;
        let found = slots
            .find(hash, |&at| {
                users.get(at as usize).is_some_and(|u| u.id() == id)
            })
            .map(|&at| at as usize);
        let (at, new) = match found {
            Some(at) => (at, false),
            None => {
                if users.len() == users.capacity() {
                    users.reserve_exact((users.len() / 8).max(16));
                }
                let at = users.len();
                // More than 2³² users in one shard cannot fit in memory anyway.
                let position = u32::try_from(at).unwrap_or(u32::MAX);
                users.push(User::new(id));
                slots.insert_unique(hash, position, |&p| {
                    users.get(p as usize).map_or(0, |u| hash_of(u.id()))
                });
                (at, true)
            }
        };
        // `at` was found in the table or just pushed: it is in the vector.
        let user = &mut self.users[at];
        let result = change(user, new);
        if user.is_empty() {
            self.remove(hash, at, &hash_of);
        }
        result
    }

    /// Takes out the user at `at`, whose id hashes to `hash`; the last user moves into
    /// its place.
    fn remove(&mut self, hash: u64, at: usize, hash_of: impl Fn(&str) -> u64) {
        if let Ok(slot) = self.slots.find_entry(hash, |&p| p as usize == at) {
            slot.remove();
        }
        let last = self.users.len().saturating_sub(1);
        self.users.swap_remove(at);
        if let Some(moved) = self.users.get(at).filter(|_| at != last) {
            if let Some(slot) = self
                .slots
                .find_mut(hash_of(moved.id()), |&p| p as usize == last)
            {
                *slot = u32::try_from(at).unwrap_or(u32::MAX);
            }
        }
    }

    /// Keeps the users for which `keep` is true (it may change them), then gives back
    /// memory when a quarter or less of what is held is in use.
    pub(super) fn retain(
        &mut self,
        keep: impl FnMut(&mut User) -> bool,
        hash_of: impl Fn(&str) -> u64,
    ) {
        let before = self.users.len();
        self.users.retain_mut(keep);
        if self.users.len() == before {
            return;
        }
        if self.users.len() <= self.users.capacity() / 4 {
            self.users.shrink_to_fit();
            self.slots = HashTable::with_capacity(self.users.len());
        } else {
            self.slots.clear();
        }
        let Shard { users, slots } = self;
        for (at, user) in users.iter().enumerate() {
            let position = u32::try_from(at).unwrap_or(u32::MAX);
            slots.insert_unique(hash_of(user.id()), position, |&p| {
                users.get(p as usize).map_or(0, |u| hash_of(u.id()))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::*;
    use crate::lookup::interner::Sym;
    use crate::lookup::user::Click;
    use crate::lookup::user::Fingerprinter;

    fn click(user: &mut User, micros: i64) {
        user.insert_click(Click {
            item: Sym::from_raw(1).unwrap(),
            request: Fingerprinter::default().of(""),
            micros,
        });
    }

    /// The ids the shard finds, sorted.
    fn ids(shard: &Shard, hasher: &RandomState, candidates: usize) -> Vec<String> {
        (0..candidates)
            .map(|i| format!("user-{i}"))
            .filter(|id| shard.get(hasher.hash_one(id), id).is_some())
            .collect()
    }

    #[test]
    fn users_are_found_after_others_are_removed_or_swept() {
        let hasher = RandomState::new();
        let hash_of = |id: &str| hasher.hash_one(id);
        let mut shard = Shard::default();
        for i in 0..1000 {
            let id = format!("user-{i}");
            let new = shard.update(hash_of(&id), &id, hash_of, |u, new| {
                click(u, i);
                new
            });
            assert!(new);
        }
        let id = "user-7";
        assert!(!shard.update(hash_of(id), id, hash_of, |_, new| new));
        assert_eq!(shard.len(), 1000);
        // Emptying a user takes it out; the user moved into its place is still found.
        for i in (0..1000).step_by(3) {
            let id = format!("user-{i}");
            shard.update(hash_of(&id), &id, hash_of, |u, _| u.evict_before(i64::MAX));
        }
        let left: Vec<String> = (0..1000)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("user-{i}"))
            .collect();
        let mut found = ids(&shard, &hasher, 1000);
        found.sort();
        let mut expected = left.clone();
        expected.sort();
        assert_eq!(found, expected);
        for id in &left {
            assert_eq!(shard.get(hash_of(id), id).map(User::id), Some(id.as_str()));
        }
        // A sweep that empties most users gives memory back and keeps finding the rest.
        let bytes = shard.bytes();
        shard.retain(|u| !u.evict_before(990) || !u.is_empty(), hash_of);
        let mut found = ids(&shard, &hasher, 1000);
        found.sort();
        let mut expected: Vec<String> = (990..1000)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("user-{i}"))
            .collect();
        expected.sort();
        assert_eq!(found, expected);
        assert!(shard.bytes() < bytes / 4, "{} of {bytes}", shard.bytes());
        // A user created and left empty at once is not kept.
        shard.update(hash_of("new"), "new", hash_of, |_, _| ());
        assert_eq!(shard.get(hash_of("new"), "new").map(User::id), None);
        assert_eq!(shard.len(), expected.len());
    }

    #[test]
    fn the_vector_grows_by_an_eighth() {
        let hasher = RandomState::new();
        let hash_of = |id: &str| hasher.hash_one(id);
        let mut shard = Shard::default();
        for i in 0..20_000 {
            let id = format!("user-{i}");
            shard.update(hash_of(&id), &id, hash_of, |u, _| click(u, 1));
        }
        assert!(shard.users.capacity() <= 20_000 + 20_000 / 8 + 16);
    }
}
