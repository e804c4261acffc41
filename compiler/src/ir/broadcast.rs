//! Numpy-style broadcasting helpers shared by the importer, the passes and the evaluator.

use super::BinOp;

/// The broadcast shape of `a` and `b`, `None` when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// When a constant of shape `c_shape`, broadcast against an activation of shape `x_shape`, varies
/// only along axis 1 (the channel axis), returns its value for each of the `x_shape[1]` channels.
pub fn per_channel(c_shape: &[usize], data: &[f32], x_shape: &[usize]) -> Option<Vec<f32>> {
    if c_shape.len() > x_shape.len() || x_shape.len() < 2 {
        return None;
    }
    let offset = x_shape.len() - c_shape.len();
    let channels = x_shape[1];
    for (i, &d) in c_shape.iter().enumerate() {
        let axis = i + offset;
        if d != 1 && !(axis == 1 && d == channels) {
            return None;
        }
    }
    let varies = offset <= 1 && c_shape.get(1 - offset).is_some_and(|&d| d == channels && channels > 1);
    Some(if varies { data.to_vec() } else { vec![data[0]; channels] })
}

/// Strides of a row-major shape, aligned to `rank` dimensions, with 0 for broadcast dimensions.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let mut strides = vec![0; rank];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        let axis = i + rank - shape.len();
        strides[axis] = if shape[i] == 1 { 0 } else { stride };
        stride *= shape[i];
    }
    strides
}

/// `op` applied element-wise to `a` and `b` broadcast together; `None` when the shapes do not
/// broadcast.
pub fn broadcast_binary(op: BinOp, sa: &[usize], a: &[f32], sb: &[usize], b: &[f32]) -> Option<(Vec<usize>, Vec<f32>)> {
    let out = broadcast_shape(sa, sb)?;
    let (ta, tb) = (broadcast_strides(sa, &out), broadcast_strides(sb, &out));
    let data = (0..out.iter().product())
        .map(|i| {
            let (mut rem, mut ia, mut ib) = (i, 0, 0);
            for axis in (0..out.len()).rev() {
                let c = rem % out[axis];
                rem /= out[axis];
                ia += c * ta[axis];
                ib += c * tb[axis];
            }
            op.apply(a[ia], b[ib])
        })
        .collect();
    Some((out, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_forms() {
        let x = [1, 3, 4, 4];
        assert_eq!(per_channel(&[3, 1, 1], &[1.0, 2.0, 3.0], &x), Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(per_channel(&[1, 3, 1, 1], &[1.0, 2.0, 3.0], &x), Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(per_channel(&[], &[5.0], &x), Some(vec![5.0; 3]));
        assert_eq!(per_channel(&[1], &[5.0], &x), Some(vec![5.0; 3]));
        // [C] aligns with the last axis (width), not the channels.
        assert_eq!(per_channel(&[3], &[1.0, 2.0, 3.0], &x), None);
        assert_eq!(per_channel(&[3], &[1.0, 2.0, 3.0], &[2, 3]), Some(vec![1.0, 2.0, 3.0]));
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[2, 3, 4, 4], &[3, 1, 1]), Some(vec![2, 3, 4, 4]));
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        assert_eq!(broadcast_strides(&[3, 1, 1], &[2, 3, 4, 4]), vec![0, 1, 0, 0]);
    }
}
