//! The connection table's hash index: maps a flow's hash to its slot in the slab, and nothing else.
//! The keys themselves live in the slab (the caller compares them), so each index slot is one `u32`:
//! the slot number (low 24 bits) and a 7-bit tag from the hash with the top bit set (so 0 means empty).
//! Linear probing, at most 3/4 full, backward-shift deletion (no tombstones, no periodic rehash).

/// Slab slots the index can address (24 bits).
pub(super) const MAX_ENTRIES: usize = 1 << 24;

const IDX_MASK: u32 = 0x00FF_FFFF;
const EMPTY: u32 = 0;
const MIN_SLOTS: usize = 16;

pub(super) struct Index {
    /// Power-of-two length, never full (at most 3/4 occupied).
    slots: Vec<u32>,
    len: usize,
}

#[inline]
fn tag(hash: u64) -> u32 {
    (((hash >> 57) as u32) | 0x80) << 24
}

impl Index {
    pub(super) fn new() -> Self {
        Index {
            slots: vec![EMPTY; MIN_SLOTS],
            len: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes per slot of the index (for the memory budget test).
    #[cfg(test)]
    pub(super) const SLOT_BYTES: usize = std::mem::size_of::<u32>();

    /// The slab slot whose key has `hash` and satisfies `eq`.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.mask();
        let tag = tag(hash);
        let mut i = hash as usize & mask;
        loop {
            let s = *self.slots.get(i)?;
            if s == EMPTY {
                return None;
            }
            if s & !IDX_MASK == tag && eq(s & IDX_MASK) {
                return Some(s & IDX_MASK);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds slab slot `idx` (< [`MAX_ENTRIES`], not already present) under `hash`. `rehash` gives
    /// the hash of any slot already in the index (used when the index grows).
    pub(super) fn insert(&mut self, hash: u64, idx: u32, rehash: impl Fn(u32) -> u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow(&rehash);
        }
        self.place(hash, idx);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, idx: u32) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            match self.slots.get_mut(i) {
                Some(s) if *s == EMPTY => {
                    *s = tag(hash) | (idx & IDX_MASK);
                    return;
                }
                Some(_) => i = (i + 1) & mask,
                None => return,
            }
        }
    }

    fn grow(&mut self, rehash: &impl Fn(u32) -> u64) {
        let new_len = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; new_len]);
        for s in old {
            if s != EMPTY {
                let idx = s & IDX_MASK;
                self.place(rehash(idx), idx);
            }
        }
    }

    /// Removes slab slot `idx`, stored under `hash`. Returns whether it was there.
    pub(super) fn remove(&mut self, hash: u64, idx: u32, rehash: impl Fn(u32) -> u64) -> bool {
        let mask = self.mask();
        let want = tag(hash) | (idx & IDX_MASK);
        let mut hole = hash as usize & mask;
        loop {
            match self.slots.get(hole) {
                Some(&s) if s == want => break,
                Some(&EMPTY) | None => return false,
                Some(_) => hole = (hole + 1) & mask,
            }
        }
        if let Some(s) = self.slots.get_mut(hole) {
            *s = EMPTY;
        }
        self.len -= 1;
        // Backward shift: pull later members of the cluster into the hole when their probe
        // sequence passes through it.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = match self.slots.get(j) {
                Some(&s) if s != EMPTY => s,
                _ => return true,
            };
            let home = rehash(s & IDX_MASK) as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
                }
                if let Some(o) = self.slots.get_mut(j) {
                    *o = EMPTY;
                }
                hole = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A deliberately poor hash (many collisions, long clusters) to exercise probing and the
    /// backward shift.
    fn h(key: u32) -> u64 {
        u64::from(key % 7) | (u64::from(key % 3) << 57)
    }

    #[test]
    fn matches_a_model_under_inserts_and_removes() {
        // keys[idx] = key stored in slot idx (the "slab").
        let mut keys: Vec<Option<u32>> = Vec::new();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut index = Index::new();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 500) as u32;
            if let Some(&idx) = model.get(&key) {
                if step % 3 != 0 {
                    let snapshot = keys.clone();
                    assert!(index.remove(h(key), idx, |i| h(snapshot[i as usize].unwrap())));
                    keys[idx as usize] = None;
                    model.remove(&key);
                }
            } else {
                let idx = keys.iter().position(Option::is_none).unwrap_or(keys.len());
                if idx == keys.len() {
                    keys.push(None);
                }
                keys[idx] = Some(key);
                let snapshot = keys.clone();
                index.insert(h(key), idx as u32, |i| h(snapshot[i as usize].unwrap()));
                model.insert(key, idx as u32);
            }
            assert_eq!(index.len(), model.len());
        }
        for key in 0..500u32 {
            let found = index.find(h(key), |i| keys[i as usize] == Some(key));
            assert_eq!(found, model.get(&key).copied(), "key {key}");
        }
        assert!(index.slots.len() * 3 >= index.len() * 4);
    }

    #[test]
    fn remove_of_absent_entry_is_false() {
        let mut index = Index::new();
        index.insert(5, 1, |_| 5);
        assert!(!index.remove(5, 2, |_| 5));
        assert!(index.remove(5, 1, |_| 5));
        assert_eq!(index.find(5, |_| true), None);
    }
}
