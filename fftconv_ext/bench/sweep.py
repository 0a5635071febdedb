"""The RepLKNet Table 1 sweep every suite shares: depthwise 'same' layers on (B, 384, R, R)."""

SWEEP_K_FULL = (3, 5, 7, 9, 13, 17, 21, 27, 31)
SWEEP_K_DEFAULT = (3, 7, 13, 21, 31)
SWEEP_R = (16, 32, 64)
