"""Building blocks shared by several algorithms (never copied between them).

An algorithm package imports what it needs from here; a block used by a second algorithm moves
here rather than being copied. The catalogue, one line per public name (what, shapes, source);
``algorithms/tests/test_recipe.py`` checks that every name a module exports is listed:

``blur``
    ``gaussian_blur(maps, sigma=4.0)``: separable Gaussian smoothing of ``(N, H, W)`` maps, equal to
    ``scipy.ndimage.gaussian_filter`` per map (its kernel and default half-sample symmetric border), as
    the official PatchCore and RD4AD code (sigma 4); ``border="reflect"``: torch-reflect padding, the
    kornia/anomalib ``GaussianBlur2d`` border (SuperSimpleNet).
    ``symmetric_pad_indices(size, radius)``: source indices of scipy's ``"reflect"`` border extension.
    ``gaussian_kernel1d(sigma)``: the normalised 1-D kernel it uses, radius ``int(4 sigma + 0.5)``.
``coreset``
    ``approximate_greedy_coreset(features (N, D), ratio=...)``: indices ``(M,)`` of PatchCore's
    approximate k-center greedy coreset on a 128-d random projection (Roth et al. 2022, sec. 3.2).
    ``greedy_coreset(features, ratio=...)``: the exact k-center greedy traversal (one random start).
    ``random_projection(features (N, D), dim=128)``: ``(N, dim)`` Gaussian Johnson-Lindenstrauss projection.
    ``coreset_size(n, ratio)``: the number of points kept at ``ratio`` (at least one).
``discriminator``
    ``Discriminator(in_dim, layers=2, hidden=1024)``: ``(N, D)`` patch features to ``(N,)`` raw scores,
    ``Linear -> BatchNorm1d -> LeakyReLU(0.2)`` blocks then ``Linear(-> 1, no bias)`` (SimpleNet normality;
    GLASS applies a sigmoid: anomaly probability).
    ``xavier_normal_linear(module)``: Xavier-normal weights of every ``nn.Linear`` (their ``init_weight``).
``distillation``
    ``OneClassBottleneck(channels (c1, c2, c3), blocks=, kind=, width_factor=)``: RD4AD's OCBE, three
    maps at strides 4/8/16 fused to ``(B, 2 c3, S/32, S/32)`` (Deng & Li 2022 sec. 3.3; RD4AD, UniNet, PPDm).
    ``ReverseDecoder(channels, blocks=(b3, b2, b1), kind=, width_factor=)``: de-ResNet, ``(B, 2 c3, h, w)``
    to ``[(B, c1, 8h, 8w), (B, c2, 4h, 4w), (B, c3, 2h, 2w)]`` (RD4AD ``de_resnet.py``; UniNet student).
    ``ResidualBlock(in, out, kind=, width=, stride=, up=)``: basic/bottleneck ResNet block, optionally
    halving (stride 2) or doubling (2x2 transposed conv) the size.
    ``BLOCK_KINDS``: ``("basic", "bottleneck")``.
    ``residual_stage(in, out, blocks, kind=, width_factor=, stride=, up=)``: a ResNet stage of such blocks
    (the OCBE embedding and decoder stages; PPDm's OCBE on its ``c3 + 3 c3/16``-channel VQ input).
    ``global_cosine_loss(teacher, student)``: RD4AD's loss, sum over levels of the batch mean of ``1 - cos``
    between whole flattened ``(B, C, h, w)`` maps (RD4AD, PPDm).
    ``cosine_distance_map(teacher, student, size)``: ``(B, size, size)`` sum over levels of per-pixel
    ``1 - cos``, bilinear (``align_corners=True``) to ``size`` (RD4AD's and PPDm's map, before smoothing).
    ``SplitBranchBlock(in, out, width=, stride=)``: UniNet's bottleneck-embedding block, the two channel
    halves through two 3x3 conv-BN-ReLU-conv-BN branches (the second with biases), 1x1 fuse, residual
    (official ``AttnBottleneck`` with ``halve=2`` after its ``merge_kernel``; Wei et al. 2025).
    ``BOTTLENECK_KINDS``: ``BLOCK_KINDS`` plus ``"split"`` (``OneClassBottleneck(kind="split")``: UniNet).
``feature_extractor``
    ``FeatureExtractor(backbone, layers, pretrained=..., weights_path=...)``: frozen timm
    ``features_only`` backbone; ``(B, 3, S, S)`` images to a list of ``(B, C_l, S/s_l, S/s_l)`` maps;
    weights from a local file, the hub cache, or none (tests).
    ``calibrate_batchnorm(model, images)``: re-estimates BatchNorm statistics of a random-init
    backbone from training images (data-dependent initialisation; not in any paper).
    ``resolve_layer_indices(layers)``: ``"layer2"`` / ``2`` to timm feature indices.
    ``PretrainedWeightsUnavailable``: raised with instructions when asked-for weights cannot be had.
``flows``
    ``Flow2d(channels, steps, ...)``: a chain of coupling steps on ``(B, C, H, W)``, returns
    ``(z, log|det J| (B,))``, exactly invertible (FastFlow, Yu et al. 2021).
    ``AffineCouplingStep``: FrEIA's "all-in-one" affine coupling + SOFTPLUS global affine + fixed permutation.
    ``soft_clamp(s, clamp)``: ``clamp * tanh(s)`` bound on coupling log-scales (FrEIA AllInOneBlock,
    official FastFlow, anomalib; ``s`` is the subnet output times 0.1).
    ``global_scale(g)``: FrEIA's SOFTPLUS global-affine scale ``0.1 * softplus(g, beta=0.5)``.
    ``ConditionalAffineCoupling(C, cond_channels=, subnet="fc"|"conv"|"conv_ln", hidden_ratio=, clamp=)``: one-sided
    affine coupling, condition concatenated to the subnet input; ``(B, C)`` or ``(B, C, H, W)`` (CFlow-AD, MSFlow).
    ``GlobalAffine(C)``: learned per-channel ``x * 0.1 softplus_{0.5}(a) + b``, identity at init (FrEIA SOFTPLUS).
    ``SoftPermutation(C, generator=)``: fixed random orthogonal channel mixing (FrEIA ``permute_soft=True``).
    ``Permutation(C, generator=)``: fixed random channel permutation.
    ``random_orthogonal(C, generator)``: Haar-random special orthogonal ``(C, C)`` float64 matrix.
    ``AllInOneStep(C, cond_channels=, subnet=, permute_soft=, ...)``: coupling + global affine + (soft)
    permutation, FrEIA ``AllInOneBlock`` with a condition (CFlow-AD's block).
    ``ConditionalFlow(C, steps=8, ...)``: a chain of ``AllInOneStep`` sharing one condition; ``(z, log|det J|)``.
    ``GlowCoupling(C, cond_channels=, subnet=, clamp=, subnet_factory=)``: two-sided Glow coupling, ``atan_clamp``
    log-scales, outputs clamped to +-1e6, optional own subnets (AST teacher, MSFlow fusion flow).
    ``atan_clamp(s, clamp)``: ``clamp * 0.636 * atan(s / clamp)`` (DifferNet / AST Glow coupling).
    ``fc_subnet(in, out, hidden)`` / ``conv_subnet(in, out, hidden, kernel_size)``: the two subnet shapes.
    ``conv_ln_subnet(in, out, hidden, kernel_size)``: ``Conv -> ChannelLayerNorm -> ReLU -> Conv``
    (``subnet="conv_ln"``, MSFlow's parallel flows).
    ``ChannelLayerNorm(C)``: ``nn.LayerNorm`` over the channels of ``(B, C, H, W)`` maps.
    All flow blocks: ``forward(x, cond=None) -> (y, log|det J| (B,))`` and an exact ``inverse(y, cond=None)``.
``kmeans``
    ``kmeans(features (N, D), k, iterations=30, restarts=1, init=None, generator=None)``: ``(k, D)`` centres
    and ``(N,)`` assignments; random-partition starts, Lloyd iterations, empty clusters keep their centre
    (MSPBA's clustering of patch embeddings, Tsai et al. 2022 official code).
    ``kmeans_inertia(features, centres)``: sum of squared distances to the nearest centre.
``losses``
    ``binary_focal_loss(inputs, targets, gamma=2.0, from_logits=True, smooth=0)``: mean ``-(1 - p_t)^gamma log p_t``
    (Lin et al. 2017, no alpha; SuperSimpleNet gamma 4, GLASS 2, MemSeg 4); ``smooth=1e-5``: the label-smoothed
    form of DRAEM's and GLASS's ``FocalLoss``.
    ``truncated_l1_loss(scores, anomalous, margin=0.5, normality=True)``: SimpleNet's eq. 6 hinge,
    ``mean(max(0, th - s_normal)) + mean(max(0, th + s_anomalous))`` (SimpleNet, SuperSimpleNet, GLASS).
``nearest``
    ``nearest_neighbours(queries (Q, D), bank (M, D), k=1)``: exact Euclidean ``(Q, k)`` distances and
    indices, blockwise in bounded memory (PatchCore, MSPBA, k-means).
    ``DISTANCE_BLOCK_ELEMENTS``: the largest distance block computed at once (``2**22``).
``optim``
    ``StableAdamW(params, lr=, betas=, eps=, weight_decay=, amsgrad=, clip_threshold=1)``: AdamW whose
    per-tensor step is divided by ``max(1, RMS(g / (sqrt(v_hat) + eps)))`` (Wortsman et al. 2023; the
    update rule of Dinomaly's official code; Dinomaly, INP-Former).
``patch_embedding``
    ``patch_embedding(features, patch_size=, pretrain_embed_dim=, target_embed_dim=)``: PatchCore's
    locally aware patch features: list of ``(B, C_l, h_l, w_l)`` maps to ``(B, h, w, target_embed_dim)``
    (``p x p`` neighbourhoods, per-layer and final channel pooling; Roth et al. 2022 sec. 3.1; SimpleNet).
    ``adaptive_avg_pool_channels(x (B, L, N), size)``: ``F.adaptive_avg_pool1d`` of each position's
    channel vector, ``(B, size, N)``, computed on the channel-first tensor without a transposed copy.
``perlin``
    ``perlin_noise(h, w, generator=..., res=None, rotate=False)``: ``(h, w)`` gradient noise in ``[-1, 1]``,
    lattice ``2**k`` per axis (k in 0..5), power-of-two canvas then bilinear resize (DRAEM recipe).
    ``perlin_masks(n, h, w, threshold=..., generator=..., rotate=False)``: ``(n, 1, h, w)`` binary masks
    ``noise > threshold`` (SuperSimpleNet 0.2 MVTec / 0.6 VisA; GLASS, MemSeg 0.5 with rotation).
    ``next_power_of_two(n)``: the canvas side.
``scores``
    ``topk_mean(maps (B, ...), k= | ratio=)``: ``(B,)`` mean of the ``k`` (or ``max(1, int(ratio N))``)
    largest values per image (MSFlow, Dinomaly, MemSeg image scores).
``texture``
    ``TextureSource(texture_dir=None, fallback="procedural")``: ``.sample(n, size, generator, images=)``
    gives ``(n, 3, size, size)`` RGB textures in ``[0, 1]`` for image-level synthetic anomalies: DTD (or
    any folder) with 3 of GLASS's 9 augmentations, else procedural stripes/checkers/blobs or MemSeg's
    "structure" (augmented image, 8x8 tiles shuffled); seeded by the generator.
    ``augment(images, generator, k=3)``: ``k`` of ``AUGMENTATIONS`` (GLASS's nine) on ``(B, 3, H, W)``.
    ``procedural_textures(n, size, generator)``: random two-colour sinusoid textures.
    ``shuffle_tiles(images, generator, grid=8)``: per-image random permutation of ``grid x grid`` tiles.
    ``TEXTURE_FALLBACKS``: ``("procedural", "structure")``.
``positional``
    ``positional_encoding_2d(D, H, W)``: fixed 2-D sinusoidal encoding ``(D, H, W)``, D a multiple of 4;
    first D/2 channels sin/cos of the column, last D/2 of the row (CFlow-AD ``model.py``; PEFM, AST).
``training``
    ``gradient_epoch(detector, loader, optimizer, loss_fn)``: one seeded epoch of plain gradient
    descent, returns ``{"loss": mean}`` (RD4AD, FastFlow).
    ``local_seed(seed)``: context manager seeding torch's RNG and restoring it afterwards.
    ``check_images(name, images, size)``: a float ``(B, 3, size, size)`` batch, or ``ValueError``.
    ``iter_images(name, loader, size, device)``: checked batches of a loader on ``device``.
    ``quantile(values, q)``: ``torch.quantile`` of all elements, beyond its 2**24 size limit too.
``vit_extractor``
    ``ViTFeatureExtractor(backbone, blocks, input_size=, pretrained=, weights_path=, norm=)``: frozen
    timm ViT tapped after chosen transformer blocks; ``forward_tokens`` gives ``(B, P + h w, C)``
    sequences (class + register tokens first), ``forward`` the patch maps ``(B, C, h, w)``; weights
    as ``FeatureExtractor`` (DINOv2 for AnomalyDINO, DINOv2-with-registers for Dinomaly).
``vit_reconstruction``
    ``FeedForward(dim, hidden)``: ViT-block MLP ``fc2(GELU(fc1 x))`` on ``(..., dim)`` (Dinomaly, INP-Former).
    ``NoisyBottleneck(dim, hidden, dropout)``: dropout-noised MLP bottleneck (Dinomaly 0.2; INP-Former 0).
    ``scale_gradient(x, scale)``: identity forward, gradient times ``scale`` backward (hard / soft mining).
    ``cosine_anomaly_map(encoder, decoder, size)``: mean over groups of channel-wise ``1 - cos`` of
    ``(B, C, h, w)`` pairs, bilinear (align_corners) to ``(B, size, size)`` (official ``cal_anomaly_maps``).
    ``box_gaussian_blur(maps (B, H, W), kernel_size=5, sigma=4)``: the official ``get_gaussian_kernel`` filter,
    zero padding.
    ``warm_cosine_lr(step, base=, final=, total=, warmup=)``: official ``WarmCosineScheduler`` value.
    ``init_reconstruction_weights(modules)``: trunc-normal(0.01, +-0.03) Linear weights, zero biases, unit LayerNorms.
    ``count_parameters(module)``: number of trainable parameters.
"""
