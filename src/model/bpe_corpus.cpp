// The fixed English text `make-model` learns its tokenizer's merges from. Written for this
// purpose; changing it changes every generated tokenizer (and so the make-model outputs).
#include "model/bpe_builder.h"

namespace llmux {

std::string_view BpeTrainingText() {
  return R"(Once upon a time, in a small town near the sea, there lived a baker named Anna. Every
morning she woke up before the sun and walked to her little shop on the corner of the main
street. She mixed flour, water, salt and yeast, and she baked bread for the people of the town.
The children loved her sweet rolls, and the fishermen bought her long loaves before they went
out on their boats. One day a storm came from the west. The wind was strong and the rain fell
for three days and three nights. The boats could not go out, and the people stayed in their
houses. Anna thought about her friends and neighbors. She baked more bread than ever before,
and she carried it from house to house in a big basket. When the storm was over, the town
came together in the square. They thanked Anna for her kindness, and they helped her to fix
the roof of her shop, which the wind had broken. From that day on, the people of the town
said that the best bread in the world was made with flour, water, salt, yeast and a good heart.

The server receives a request from a client. It reads the request, checks the key, and finds
the tenant that the key belongs to. Then it puts the request in a queue. The scheduler looks at
the queue at every step and decides which requests run next. It counts the tokens that each
tenant has used, and it gives the next turn to the tenant that has used the least. When the
memory for the cache is full, the scheduler stops a request with a low priority and starts it
again later. The model reads the tokens of the prompt, computes the next token, and sends it
back to the client as soon as it is ready. The client sees the answer appear word by word.
Numbers such as 1, 2, 3, 10, 42, 100, 2024 and 3.14 appear in text too, and so do questions:
What time is it? Where are you going? How many tokens are in this sentence? Why is the sky
blue? Because the air scatters blue light more than red light, the sky looks blue in the day
and red in the evening. Good models answer questions like these in a clear and simple way.

"I think we should go to the park," said Tom. "It is a beautiful day, and the sun is shining."
"Yes," said his sister. "Let's take the dog with us. He likes to run on the grass and play
with the ball." They walked to the park together. The dog ran after the ball again and again,
and the children laughed. After a while they sat under a tree and ate the sandwiches that
their mother had made for them. Then they went home, happy and tired, and they slept well.
)";
}

}  // namespace llmux
