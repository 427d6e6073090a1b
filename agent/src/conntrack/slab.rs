//! The slot array of the connection table, grown in fixed chunks: a `Vec` doubles its capacity, so a
//! table of 100 000 connections could hold room for 131 072 (a third more memory than it needs).
//! Chunks cap the slack at one chunk.

/// Slots per chunk: 1 024 slots of a few hundred bytes each, a few hundred KiB at a time.
const CHUNK: usize = 1024;

pub(super) struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Slab<T> {
    pub(super) fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    pub(super) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }
}

#[cfg(test)]
impl<T> Slab<T> {
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
impl<T> std::ops::Index<usize> for Slab<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        self.get(i).expect("slot index in range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_across_chunks_and_never_over_allocates_more_than_a_chunk() {
        let mut s = Slab::new();
        for i in 0..(3 * CHUNK + 5) {
            s.push(i);
        }
        assert_eq!(s.len(), 3 * CHUNK + 5);
        assert_eq!(s.get(0), Some(&0));
        assert_eq!(s.get(CHUNK), Some(&CHUNK));
        assert_eq!(s.get(3 * CHUNK + 4), Some(&(3 * CHUNK + 4)));
        assert_eq!(s.get(3 * CHUNK + 5), None);
        if let Some(v) = s.get_mut(CHUNK + 1) {
            *v = 7;
        }
        assert_eq!(s.get(CHUNK + 1), Some(&7));
        let capacity: usize = s.chunks.iter().map(Vec::capacity).sum();
        assert_eq!(capacity, 4 * CHUNK);
    }
}
