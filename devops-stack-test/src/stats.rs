//! Figures of repeated measurements, for the live benchmarks' summaries.

/// The median of `values` (the mean of the middle two for an even count).
///
/// ```
/// assert_eq!(devops_stack_test::stats::median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(devops_stack_test::stats::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
/// ```
///
/// # Panics
/// When `values` is empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
