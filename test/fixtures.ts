/**
 * Shared test fixtures. TEST_MODEL: the smallest model of the shape the code supports (ViT of one
 * layer, one decoder layer, GQA with 4 query / 2 key-value heads), small enough to train in seconds.
 */
export const TEST_MODEL = {
  vision_config: { hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
  projector_config: { hidden_size: 32 },
  text_config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 },
};
